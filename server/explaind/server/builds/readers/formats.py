"""What the data set readers share: format detection, opening through
fsspec, and turning one decoded record into an Instance with an error that
names the file and line."""
from __future__ import annotations

import contextlib
import io
import os
from typing import IO, Any, Iterator

from explaind.server.builds.readers.budget import counted
from explaind.server.errors import InvalidArgument
from explaind.server.runtime.instances import Instance, parse_instance

# extension -> format; checked after stripping a compression suffix.
FORMATS = {
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".tfrecord": "tfrecord",
    ".tfrec": "tfrecord",
    ".npy": "npy",
    ".parquet": "parquet",
}
_COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}


def _split(path: str) -> tuple[str, str | None]:
    base = path.split("?", 1)[0].lower()
    stem, ext = os.path.splitext(base)
    if ext in _COMPRESSION:
        return os.path.splitext(stem)[1], _COMPRESSION[ext]
    return ext, None


def format_of(path: str) -> str | None:
    """"jsonl", "csv", "tfrecord", "npy", "parquet", or None. A path from
    expand_uris may carry the format its data source declares for files
    whose extension names none."""
    return FORMATS.get(_split(path)[0]) or getattr(path, "data_format", None)


@contextlib.contextmanager
def open_binary(path: str) -> Iterator[IO[bytes]]:
    """A binary file object for a local path or any fsspec URL,
    decompressing by suffix."""
    import fsspec

    with fsspec.open(path, "rb", compression=_split(path)[1]) as f:
        yield counted(f)               # against the build's read budget, if any


@contextlib.contextmanager
def open_text(path: str) -> Iterator[IO[str]]:
    with open_binary(path) as f:
        yield io.TextIOWrapper(f, encoding="utf-8", newline="")


def is_compressed(path: str) -> bool:
    return _split(path)[1] is not None


def record_error(path: str, where: str, message: str, field: str) -> InvalidArgument:
    return InvalidArgument(f"{path} {where}: {message}", field=field)


def to_instance(value: Any, input_names: list[str] | None, path: str, where: str, field: str) -> Instance:
    """parse_instance for one data set record; errors name the file and the
    record ("line 3") and keep the offending key in the message."""
    try:
        return parse_instance(value, input_names, embeddings=False, field="record")
    except InvalidArgument as e:
        key = (e.field or "record")[len("record") :].lstrip(".")
        message = f"{e.message} (key {key!r})" if key else e.message
        raise record_error(path, where, message, field) from None
