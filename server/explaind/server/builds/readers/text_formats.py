"""JSON Lines and CSV data sets."""
from __future__ import annotations

import csv
import json
from typing import Any, Iterator

from explaind.server.builds.readers.formats import open_binary, open_text, record_error, to_instance
from explaind.server.runtime.instances import RESERVED_KEYS, Instance


def read_jsonl(path: str, input_names: list[str] | None, field: str) -> Iterator[Instance]:
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line.strip())
            except json.JSONDecodeError as e:
                raise record_error(path, f"line {lineno}", f"invalid JSON: {e.msg} at column {e.colno}", field) from None
            yield to_instance(value, input_names, path, f"line {lineno}", field)


def count_jsonl(path: str) -> int:
    n = 0
    with open_binary(path) as f:
        for line in f:
            if line.strip():
                n += 1
    return n


def read_csv(path: str, input_names: list[str] | None, field: str) -> Iterator[Instance]:
    with open_text(path) as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return
        header = [h.strip() for h in header]
        pack_into = _check_header(header, input_names, path, field)
        for row in reader:
            where = f"line {reader.line_num}"
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise record_error(path, where, f"{len(row)} columns, the header has {len(header)}", field)
            yield to_instance(_row_value(header, row, pack_into, path, where, field), input_names, path, where, field)


def count_csv(path: str) -> int:
    with open_text(path) as f:
        rows = sum(1 for row in csv.reader(f) if row and any(c.strip() for c in row))
    return max(rows - 1, 0)


def _check_header(header: list[str], input_names: list[str] | None, path: str, field: str) -> str | None:
    """Validate the header. Returns the input name that non-reserved columns
    are packed into (a one-input model whose header names features, not
    inputs: each row becomes that input's vector), else None."""
    others = [h for h in header if h not in RESERVED_KEYS]
    if len(set(header)) != len(header):
        raise record_error(path, "line 1", "duplicate column names in the header", field)
    if input_names is None:
        if others:
            raise record_error(
                path, "line 1", f"column {others[0]!r}: the model has no SavedModel, only embeddings are read", field
            )
        return None
    unknown = [h for h in others if h not in input_names]
    if unknown and len(input_names) == 1 and not any(h in input_names for h in others):
        return input_names[0]
    if unknown:
        raise record_error(
            path, "line 1", f"column {unknown[0]!r} is not a model input ({sorted(input_names)}) nor reserved", field
        )
    return None


def _row_value(header: list[str], row: list[str], pack_into: str | None, path: str, where: str, field: str) -> dict:
    value: dict[str, Any] = {}
    packed = []
    for name, cell in zip(header, row):
        if name in RESERVED_KEYS:
            if cell.strip() == "":
                continue
            if name in ("restricts", "embedding"):
                try:
                    value[name] = json.loads(cell)
                except json.JSONDecodeError as e:
                    raise record_error(path, where, f"column {name!r} is not JSON: {e.msg}", field) from None
            else:
                value[name] = cell
        elif pack_into is not None:
            packed.append(parse_cell(cell))
        else:
            value[name] = parse_cell(cell)
    if pack_into is not None and "embedding" not in value:
        value[pack_into] = packed
    return value


def parse_cell(cell: str) -> Any:
    """A number when the cell reads as one, else the text."""
    text = cell.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return cell
