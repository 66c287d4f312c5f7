"""A batch job's JSON lines, read and written by orjson where it reads or writes
them as json would, by json otherwise.

Reading: orjson parses a line about 3x faster than json.loads. Where the two
differ: orjson reads integers beyond 64 bits as doubles (json keeps them
exact), and refuses NaN and infinity literals, numbers beyond a double's range
(json reads 1e400 as infinity), lone surrogates and nesting past 1024. So a line
with a run of 19 digits or more (where every integer beyond 64 bits is) goes to
json, and so does a line that orjson refuses: json then reads it, or refuses it
with its own message, as it always did.

Writing:
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

# Every integer orjson cannot hold exactly has at least 19 digits (2^63 has 19). A line's
# bytes, digits turned to "9" and the rest to " ", hold 19 nines in a row where it has such
# a run: a C-speed test (about 0.7 us a line, where a regular expression took 8-20).
_DIGIT_RUNS = bytes(0x39 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_RUN = b"9" * 19


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def loads_line(line: str):
    """The JSON value of one line, as json.loads reads it (NaN and infinity literals refused:
    ValueError, json.JSONDecodeError with its position where the line is not JSON,
    RecursionError where it nests too deeply)."""
    if _LONG_RUN not in line.encode("utf-8", "surrogatepass").translate(_DIGIT_RUNS):
        try:
            return orjson.loads(line)
        except orjson.JSONDecodeError:
            pass                     # json decides: its value (1e400) or its own error
    return json.loads(line, parse_constant=_no_constant)


def dumps_line(line: dict) -> bytes:
    """`line` as JSON bytes; ValueError where it holds a number JSON has no word for."""
    try:
        written = orjson.dumps(line)
    except TypeError:                 # orjson.JSONEncodeError is one
        written = None
    if written is not None and b"null" not in written:
        return written
    return json.dumps(line, allow_nan=False, separators=(",", ":")).encode()
