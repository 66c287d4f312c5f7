"""A batch job's input: its files, counted, then read row by row as Vertex AI
reads each `instancesFormat`.

    jsonl            each non-empty line is one JSON value
    csv              a header, then one row per line: a JSON array of its cells (numbers where
                     they read as numbers), or an object by header with instance_type "object"
    tf-record        each record as {"b64": its bytes in base64}; GZIP files are recognised by
    tf-record-gzip   their first bytes (or a .gz name), so both names read both
    file-list        each non-empty line names a file (under --allowed-uri-prefix): its bytes,
                     as {"b64": ...}

A row that cannot be read (JSON that does not parse, a CSV row of the wrong
width, a listed file that is missing) comes back with its error, to go to the
job's errors files; the job goes on. A file that cannot be opened at all, or a
TFRecord file whose framing breaks, fails the job: the rows after the break
cannot be told apart. Files stream: a row is read when it is asked for.
"""
from __future__ import annotations

import base64
import csv
import dataclasses
import json
import math
from typing import Any, Iterator

import grpc

from ..builds import readers
from ..builds.readers.formats import open_binary, open_text
from ..builds.readers.text_formats import count_csv, count_jsonl, parse_cell
from ..builds.readers.tfrecord import count_tfrecord, iter_frames, open_records
from ..errors import ExplaindError, InvalidArgument
from ..security import uris as allowed_uris
from .json_lines import loads_line

JSONL, CSV, TF_RECORD, TF_RECORD_GZIP, FILE_LIST = "jsonl", "csv", "tf-record", "tf-record-gzip", "file-list"
FORMATS = (JSONL, CSV, TF_RECORD, TF_RECORD_GZIP, FILE_LIST)
MAX_SHOWN_CHARS = 10_000          # an unreadable line is written to the errors files up to this length


@dataclasses.dataclass(frozen=True)
class RowError:
    code: grpc.StatusCode
    message: str


@dataclasses.dataclass(frozen=True)
class Row:
    """One row of the input. `value`: the instance as read (for an unreadable row, what was
    read of it, for the errors files); `where`: the file and line or record, for messages."""
    position: int
    value: Any
    where: str
    error: RowError | None = None


@dataclasses.dataclass(frozen=True)
class InputFiles:
    """The job's files, expanded and checked against --allowed-uri-prefix, in data set order."""
    paths: tuple[str, ...]
    instances_format: str
    file_max_bytes: int = 64 << 20     # file-list: the largest file one row may be

    @classmethod
    def expand(cls, uris: list[str], instances_format: str, field: str, file_max_bytes: int = 64 << 20
               ) -> "InputFiles":
        check_format(instances_format, field)
        # Every file (and every file of a folder) is read in the job's format, whatever its name says.
        paths = readers.expand_uris(uris, field, default_format="jsonl")
        return cls(tuple(str(p) for p in paths), instances_format, file_max_bytes)

    def count(self) -> int:
        counter = {JSONL: count_jsonl, FILE_LIST: count_jsonl, CSV: count_csv}.get(self.instances_format,
                                                                                  count_tfrecord)
        return sum(counter(path) for path in self.paths)

    def rows(self, first_position: int = 0) -> Iterator[Row]:
        read = {JSONL: _jsonl, CSV: _csv, FILE_LIST: self._file_list}.get(self.instances_format, _tfrecord)
        position = first_position
        for path in self.paths:
            for row in read(path, position):
                yield row
                position += 1

    def _file_list(self, path: str, first: int) -> Iterator[Row]:
        for i, (lineno, line) in enumerate(_lines(path)):
            yield _listed_file(first + i, line.strip(), f"{path} line {lineno}", self.file_max_bytes)


def check_format(instances_format: str, field: str) -> None:
    if instances_format not in FORMATS:
        raise InvalidArgument(f"must be one of {', '.join(FORMATS)}, got {instances_format[:100]!r}", field=field)


def _lines(path: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of the non-empty lines: the rows count_jsonl counts."""
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                yield lineno, line


def _jsonl(path: str, first: int) -> Iterator[Row]:
    for i, (lineno, line) in enumerate(_lines(path)):
        where = f"{path} line {lineno}"
        try:
            value = loads_line(line)
        except (ValueError, RecursionError) as e:
            yield Row(first + i, _shown(line.strip()), where,
                      RowError(grpc.StatusCode.INVALID_ARGUMENT, f"{where}: not JSON: {_reason(e)}"))
        else:
            yield Row(first + i, value, where)


def _reason(error: Exception) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at column {error.colno}"
    return "nested too deeply" if isinstance(error, RecursionError) else str(error)


def _csv(path: str, first: int) -> Iterator[Row]:
    with open_text(path) as f:
        reader = csv.reader(f)
        header = next(reader, None)
        position = first
        for cells in reader:
            if not cells or all(not c.strip() for c in cells):
                continue               # as count_csv: blank rows are no rows
            where = f"{path} line {reader.line_num}"
            if len(cells) != len(header):
                yield Row(position, _shown(",".join(cells)), where, RowError(
                    grpc.StatusCode.INVALID_ARGUMENT, f"{where}: {len(cells)} columns, the header has {len(header)}"))
            else:
                yield Row(position, CsvRow([h.strip() for h in header], [_cell(c) for c in cells]), where)
            position += 1


def _cell(text: str):
    """A number when the cell reads as a finite one ("nan" and "inf" stay text: no JSON number)."""
    value = parse_cell(text)
    return value if not isinstance(value, float) or math.isfinite(value) else text


class CsvRow(list):
    """A CSV row's cells (the instance Vertex sends), knowing its header for instance_config."""

    def __init__(self, header: list[str], cells: list):
        super().__init__(cells)
        self.header = header


def _tfrecord(path: str, first: int) -> Iterator[Row]:
    with open_records(path) as f:
        frames = iter_frames(f)
        n = 0
        while True:
            try:
                payload = next(frames)
            except StopIteration:
                return
            except ValueError as e:
                raise InvalidArgument(f"{path} record {n + 1}: {e}; the records after it cannot be read",
                                      field="input_config") from None
            yield Row(first + n, {"b64": base64.b64encode(payload).decode("ascii")}, f"{path} record {n + 1}")
            n += 1


def _listed_file(position: int, uri: str, where: str, max_bytes: int) -> Row:
    """A file-list row: the listed file's bytes as {"b64": ...}, or the reason it has none."""
    try:
        path = allowed_uris.check(uri, "instance")
        with open_binary(path) as f:
            data = f.read(max_bytes + 1)
    except ExplaindError as e:
        return Row(position, uri, where, RowError(e.code, f"{where}: {e.message}"))
    except FileNotFoundError:
        return Row(position, uri, where, RowError(grpc.StatusCode.NOT_FOUND, f"{where}: {uri} not found"))
    except (OSError, ValueError) as e:
        return Row(position, uri, where, RowError(grpc.StatusCode.INVALID_ARGUMENT,
                                                  f"{where}: cannot read {uri}: {e}"))
    if len(data) > max_bytes:
        return Row(position, uri, where, RowError(grpc.StatusCode.INVALID_ARGUMENT,
                                                  f"{where}: {uri} is larger than {max_bytes} bytes"))
    return Row(position, {"b64": base64.b64encode(data).decode("ascii")}, where)


def _shown(text: str) -> str:
    return text if len(text) <= MAX_SHOWN_CHARS else text[:MAX_SHOWN_CHARS] + "..."
