"""The `filter` of ListOperations: a small AIP-160 subset.

    done=true | done=false          finished (with a response or an error) or not
    model=<id> | model=models/<id>  uploads of that model
    error=true | error=false        ended with an error or not

Terms are joined by AND (case-insensitive); values may be quoted. Anything
else is INVALID_ARGUMENT naming `filter`, never silently ignored.
"""
from __future__ import annotations

import re
from typing import Callable

from google.longrunning import operations_pb2

from ..errors import InvalidArgument
from ..store.operations import model_of

TERM = re.compile(r'^\s*(\w+)\s*=\s*"?([^"\s]*)"?\s*$')
BOOLEANS = {"true": True, "false": False}
Predicate = Callable[[operations_pb2.Operation], bool]


def parse_filter(text: str) -> Predicate:
    predicates = [_term(term) for term in re.split(r"\s+AND\s+", text.strip(), flags=re.IGNORECASE)] \
        if text.strip() else []
    return lambda op: all(p(op) for p in predicates)


def _term(term: str) -> Predicate:
    match = TERM.match(term)
    if not match:
        raise InvalidArgument(f"cannot read {term!r}; use done=true|false, error=true|false or model=<id>, "
                              "joined by AND", field="filter")
    key, value = match.group(1).lower(), match.group(2)
    if key in ("done", "error"):
        if value.lower() not in BOOLEANS:
            raise InvalidArgument(f"{key} takes true or false, got {value!r}", field="filter")
        wanted = BOOLEANS[value.lower()]
        if key == "done":
            return lambda op: op.done == wanted
        return lambda op: op.HasField("error") == wanted
    if key == "model":
        name = value if value.startswith("models/") else f"models/{value}"
        return lambda op: model_of(op) == name
    raise InvalidArgument(f"unknown field {key!r}; filter on done, error or model", field="filter")
