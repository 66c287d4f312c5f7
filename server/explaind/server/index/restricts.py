"""Token restricts (Vertex AI Vector Search): parsing one JSON list of
namespaces, for examples at build time and for queries at request time.

A query is a list of Namespace clauses ANDed together; docs/semantics.md
(Restrictions) gives the matching rules, implemented in postings.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from explaind.server.errors import InvalidArgument

_NAME_KEYS = ("namespace", "namespace_name", "namespaceName")
_ALLOW_KEYS = ("allow", "allow_list", "allowList")
_DENY_KEYS = ("deny", "deny_list", "denyList")
_KNOWN = set(_NAME_KEYS) | set(_ALLOW_KEYS) | set(_DENY_KEYS)


@dataclass(frozen=True)
class Namespace:
    name: str
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()


def _one_of(entry: dict, keys: tuple[str, ...], field: str) -> tuple[str, Any]:
    """(the key used, its value); several spellings of one key at once is an error."""
    present = [k for k in keys if k in entry]
    if len(present) > 1:
        raise InvalidArgument(f"give only one of {', '.join(present)}", field=f"{field}.{present[1]}")
    return (present[0], entry[present[0]]) if present else (keys[0], None)


def _tokens(value: Any, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise InvalidArgument(f"must be a list of strings, got {type(value).__name__}", field=field)
    for j, tok in enumerate(value):
        if not isinstance(tok, str):
            raise InvalidArgument(f"token must be a string, got {tok!r}", field=f"{field}[{j}]")
    return tuple(dict.fromkeys(value))  # drop repeats, keep order


def parse_restricts(value: Any, field: str, max_tokens: int = 1000) -> list[Namespace]:
    """JSON restricts -> namespaces. "" or None means none. Errors name the
    path of the offending entry, e.g. f"{field}[2].namespace_name"."""
    if value is None or value == "":
        return []
    if not isinstance(value, (list, tuple)):
        raise InvalidArgument(f"restricts must be a list, got {type(value).__name__}", field=field)
    out: list[Namespace] = []
    seen: set[str] = set()
    total = 0
    for i, entry in enumerate(value):
        item_field = f"{field}[{i}]"
        if isinstance(entry, Namespace):
            ns = entry
            name_field = f"{item_field}.namespace_name"
        else:
            if not isinstance(entry, dict):
                raise InvalidArgument(f"must be an object, got {type(entry).__name__}", field=item_field)
            unknown = sorted(k for k in entry if k not in _KNOWN)
            if unknown:
                raise InvalidArgument(f"unknown key {unknown[0]!r}; expected namespace, allow, deny",
                                      field=f"{item_field}.{unknown[0]}")
            name_key, name = _one_of(entry, _NAME_KEYS, item_field)
            name_field = f"{item_field}.{name_key if name_key in entry else 'namespace_name'}"
            if not isinstance(name, str) or not name:
                raise InvalidArgument("namespace name must be a non-empty string", field=name_field)
            allow_key, allow = _one_of(entry, _ALLOW_KEYS, item_field)
            deny_key, deny = _one_of(entry, _DENY_KEYS, item_field)
            ns = Namespace(name, _tokens(allow, f"{item_field}.{allow_key}"),
                           _tokens(deny, f"{item_field}.{deny_key}"))
        if ns.name in seen:
            raise InvalidArgument(f"namespace {ns.name!r} appears twice", field=name_field)
        seen.add(ns.name)
        total += len(ns.allow) + len(ns.deny)
        if total > max_tokens:
            raise InvalidArgument(f"more than {max_tokens} restrict tokens in total", field=item_field)
        out.append(ns)
    return out


def and_queries(*queries: list[Namespace] | None) -> list[Namespace]:
    """AND of several queries (an instance's restricts and the override's):
    the clauses side by side; a namespace named in both stays two clauses."""
    return [ns for q in queries if q for ns in q]
