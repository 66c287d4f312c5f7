"""`filter` and `order_by` of Vertex's ListModels and ListEndpoints: the AIP-160
subset Vertex documents for them.

    display_name="flowers"            equal (also displayName; != for not equal)
    display_name:"flow*"              has (a trailing * matches a prefix)
    labels.team="vision"  labels.team:*   a label's value, or its presence
    state=JOB_STATE_SUCCEEDED         a batch job's state (ListBatchPredictionJobs: `states`)
    NOT term, -term, term AND term, term OR term, parentheses

AND binds tighter than OR. Anything else is INVALID_ARGUMENT naming `filter`,
never silently ignored. `order_by`: display_name, create_time, update_time,
comma separated, each optionally followed by "desc".
"""
from __future__ import annotations

import dataclasses
import re
from typing import Callable

from ..errors import InvalidArgument
from . import page_tokens

MAX_FILTER_CHARS = 2000
DEFAULT_PAGE = 100
MAX_PAGE = 1000                 # larger page sizes are read as this, as Vertex does
TOKEN = re.compile(r'\s*(?:(?P<paren>[()])|(?P<op>!=|=|:)|(?P<string>"(?:[^"\\]|\\.)*")|(?P<word>[^\s()=!:"]+))')
FIELD = re.compile(r"^(display_name|displayName|labels\.[a-z0-9_-]{1,63})$")
ORDER_FIELDS = {"display_name": "display_name", "displayName": "display_name", "create_time": "create_time",
                "createTime": "create_time", "update_time": "update_time", "updateTime": "update_time"}


@dataclasses.dataclass(frozen=True)
class Listed:
    """What a filter and an ordering read of one resource."""
    display_name: str
    labels: dict
    create_time: float
    update_time: float
    state: str = ""             # a batch job's JobState name


Predicate = Callable[[Listed], bool]


def seconds(stamp) -> float:
    """A google.protobuf.Timestamp as seconds, for ordering."""
    return stamp.seconds + stamp.nanos / 1e9


def parse_filter(text: str, states: tuple[str, ...] = ()) -> Predicate:
    """`states`: the values a `state` term may take (none: no state to filter on)."""
    if len(text) > MAX_FILTER_CHARS:
        raise InvalidArgument(f"at most {MAX_FILTER_CHARS} characters, got {len(text)}", field="filter")
    tokens = _tokens(text)
    if not tokens:
        return lambda _: True
    parser = _Parser(tokens, states)
    predicate = parser.disjunction()
    if parser.position != len(tokens):
        raise InvalidArgument(f"unexpected {tokens[parser.position][1]!r}", field="filter")
    return predicate


def _tokens(text: str) -> list[tuple[str, str]]:
    out, position = [], 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise InvalidArgument(f"cannot read {text[position:position + 40]!r}", field="filter")
        kind = match.lastgroup
        out.append((kind, match.group(kind)))
        position = match.end()
    return out


class _Parser:
    def __init__(self, tokens, states: tuple[str, ...] = ()):
        self.tokens = tokens
        self.states = states
        self.position = 0
        self.depth = 0

    def _peek(self):
        return self.tokens[self.position] if self.position < len(self.tokens) else (None, None)

    def _take(self):
        token = self._peek()
        self.position += 1
        return token

    def disjunction(self) -> Predicate:
        terms = [self.conjunction()]
        while self._peek() == ("word", "OR"):
            self._take()
            terms.append(self.conjunction())
        return terms[0] if len(terms) == 1 else (lambda r: any(t(r) for t in terms))

    def conjunction(self) -> Predicate:
        terms = [self.unary()]
        while self._peek()[0] is not None and self._peek() not in (("word", "OR"), ("paren", ")")):
            if self._peek() == ("word", "AND"):
                self._take()
            terms.append(self.unary())        # AIP-160: juxtaposition is AND
        return terms[0] if len(terms) == 1 else (lambda r: all(t(r) for t in terms))

    def unary(self) -> Predicate:
        kind, value = self._peek()
        if (kind, value) == ("word", "NOT") or (kind == "word" and value.startswith("-") and len(value) > 1):
            if value == "NOT":
                self._take()
            else:
                self.tokens[self.position] = ("word", value[1:])
            inner = self.unary()
            return lambda r: not inner(r)
        if (kind, value) == ("paren", "("):
            self._take()
            self.depth += 1
            if self.depth > 20:
                raise InvalidArgument("nested too deeply", field="filter")
            inner = self.disjunction()
            if self._take() != ("paren", ")"):
                raise InvalidArgument("a parenthesis is not closed", field="filter")
            self.depth -= 1
            return inner
        return self.comparison()

    def comparison(self) -> Predicate:
        kind, name = self._take()
        state = self.states and name == "state"
        if kind != "word" or not (FIELD.match(name or "") or state):
            raise InvalidArgument(f"cannot filter on {str(name)[:100]!r}; use display_name"
                                  f"{', state' if self.states else ''} or labels.<key>", field="filter")
        op_kind, op = self._take()
        value_kind, value = self._take()
        if op_kind != "op" or value_kind not in ("string", "word"):
            raise InvalidArgument(f"expected {name} = \"value\", != or :", field="filter")
        if value_kind == "string":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        if state and (op == ":" or value not in self.states):
            raise InvalidArgument(f"state takes = or != and one of {', '.join(self.states)}; got {op} {value[:60]!r}",
                                  field="filter")
        label = name.removeprefix("labels.")
        read = (lambda r: r.state) if state else (lambda r: r.display_name) if label == name else \
            (lambda r: r.labels.get(label))
        if op == ":":
            if value == "*":
                return lambda r: read(r) is not None
            if value.endswith("*"):
                return lambda r: read(r) is not None and read(r).startswith(value[:-1])
            return lambda r: read(r) == value
        if op == "=":
            return lambda r: read(r) == value
        return lambda r: read(r) != value


def parse_order(text: str) -> Callable[[list[Listed]], None]:
    """A function sorting a list of (Listed, item) pairs in place by `order_by`."""
    keys = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        words = part.split()
        if len(words) > 2 or words[0] not in ORDER_FIELDS or (len(words) == 2 and words[1].lower() not in
                                                               ("asc", "desc")):
            raise InvalidArgument(f"cannot order by {part[:100]!r}; use display_name, create_time or update_time, "
                                  "optionally followed by desc", field="order_by")
        keys.append((ORDER_FIELDS[words[0]], len(words) == 2 and words[1].lower() == "desc"))

    def order(pairs: list) -> None:
        for attribute, descending in reversed(keys):        # stable sorts, least significant key first
            pairs.sort(key=lambda pair: getattr(pair[0], attribute), reverse=descending)
    return order


def page_of(items: list, page_size: int, page_token: str) -> tuple[list, str]:
    """One page of an ordered list, and the token of the next ("" after the last)."""
    if page_size < 0:
        raise InvalidArgument(f"must be >= 0, got {page_size}", field="page_size")
    size = min(page_size or DEFAULT_PAGE, MAX_PAGE)
    start = 0
    if page_token:
        prefix, _, offset = page_tokens.decode(page_token).partition(":")
        if prefix != "offset" or not offset.isdigit() or len(offset) > 12:
            raise InvalidArgument("not a token this server issued", field="page_token")
        start = int(offset)
    end = start + size
    return items[start:end], page_tokens.encode(f"offset:{end}") if end < len(items) else ""
