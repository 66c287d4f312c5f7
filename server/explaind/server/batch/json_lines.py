"""A batch job's output lines as bytes: written by orjson where it writes the
line as json would, by json otherwise.

orjson writes a line about 20x faster than json.dumps (1.2 against 22 us for
an integrated-gradients row of 16 features), which was a fifth of a row's cost
on the array path. Where the two differ: orjson writes NaN and infinity as
null and refuses integers beyond 64 bits and lone surrogates, where json
refuses non-finite numbers (ValueError, which the callers turn into the row's
error) and writes the others. So a line that orjson refuses, or writes with a
null in it, is written again by json: what it writes then is what it always
wrote. Both write compact JSON; their numbers are the same doubles, spelled
alike but for the exponent (1e-7 and 1e-07).
"""
from __future__ import annotations

import json

import orjson


def dumps_line(line: dict) -> bytes:
    """`line` as JSON bytes; ValueError where it holds a number JSON has no word for."""
    try:
        written = orjson.dumps(line)
    except TypeError:                 # orjson.JSONEncodeError is one
        written = None
    if written is not None and b"null" not in written:
        return written
    return json.dumps(line, allow_nan=False, separators=(",", ":")).encode()
