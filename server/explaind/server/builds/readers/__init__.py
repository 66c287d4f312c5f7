"""Read the examples data set: expand URIs, count and iterate records.

Formats by extension (a trailing ".gz" etc. is decompressed on the fly):
  .jsonl, .json        one JSON object (or bare value) per line, as request instances,
                       plus optional id, restricts, crowding_tag, embedding
  .csv                 header = input names; "id", "crowding_tag", "restricts"
                       (JSON text) and "embedding" (JSON list) columns are reserved
  .tfrecord, .tfrec    tf.train.Example; features named like the inputs; "id",
                       "crowding_tag", "embedding" (float list) and "restricts"
                       (JSON bytes) are reserved
  .npy                 N x d floats: embedding records
  .parquet             an "embedding" column of lists or input columns, plus
                       optional id / crowding_tag / restricts columns
Everything goes through fsspec, so any fsspec URL works. Records keep id
None when they carry none: the build job assigns positions.
"""
from __future__ import annotations

import os
from typing import Iterator, Sequence

from explaind.server.errors import InvalidArgument
from explaind.server.builds.readers import columnar, text_formats, tfrecord
from explaind.server.builds.readers.formats import FORMATS, format_of
from explaind.server.runtime.instances import Instance
from explaind.server.security import uris as allowed_uris

__all__ = ["expand_uris", "expand_uris_with_fields", "count_records", "iter_records", "iter_batches", "FORMATS",
           "format_of", "require_format"]


def expand_uris_with_fields(uris: list[str], field: str,
                            default_format: str | None = None) -> list[tuple[str, str]]:
    """Like expand_uris, each path paired with the field of the uri it came
    from (f"{field}[i]"), for error messages while reading. Under
    --allowed-uri-prefix each uri and each file it expands to must lie under a
    prefix (security/uris.py); local files come back as their real paths."""
    return [(allowed_uris.check(path, f), f) for path, f in _expand(uris, field, default_format)]


def _expand(uris: list[str], field: str, default_format: str | None) -> list[tuple[str, str]]:
    """(each matched path as listed, before its own check; the field of its uri)."""
    import fsspec

    out: list[tuple[str, str]] = []
    for i, uri in enumerate(uris):
        f = f"{field}[{i}]"
        if not isinstance(uri, str) or not uri.strip():
            raise InvalidArgument("the uri is empty", field=f)
        allowed_uris.check(uri, f)      # refused before listing; each match is checked again after
        try:
            fs, path = fsspec.core.url_to_fs(uri)
        except (ImportError, ValueError) as e:
            raise InvalidArgument(f"cannot open {uri}: {e}", field=f) from None
        try:
            matches = _expand_one(fs, path, default_format)
        except Exception as e:  # backend errors: permissions, network
            raise InvalidArgument(f"cannot list {uri}: {e}", field=f) from None
        if not matches:
            raise InvalidArgument(f"{uri} matches no file", field=f)
        for m in matches:
            if "file" in _protocols(fs) and not os.path.isfile(m):
                # A FIFO would hold the build forever, a device (/dev/zero) never ends.
                raise InvalidArgument(f"{m} is not a regular file", field=f)
            out.append((_url(fs, m), f))
    return out


def _protocols(fs) -> tuple[str, ...]:
    return (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)


def _checked(path: str, field: str, default_format: str | None) -> "DataPath":
    """The path to open for a match: its real path under --allowed-uri-prefix, still
    read in the format its own name says (a link's target may have no extension)."""
    opened = DataPath(allowed_uris.check(path, field))
    opened.field = field
    opened.data_format = format_of(path) or default_format
    return opened


class DataPath(str):
    """A path from expand_uris that remembers the field of its uri
    (f"{field}[i]"), so iter_records can name it in errors, and the format a
    file whose extension names none is read as (see format_of)."""

    field: str | None = None
    data_format: str | None = None


def expand_uris(uris: list[str], field: str, default_format: str | None = None) -> list[str]:
    """Local paths, file:// URLs, any fsspec URL, globs -> file paths/URLs,
    sorted per uri. A folder stands for the data files in it. A uri that
    matches nothing is InvalidArgument(field=f"{field}[i]"). `default_format`:
    the format of files whose extension names none (else they are refused)."""
    return [_checked(p, f, default_format) for p, f in _expand(uris, field, default_format)]


def _expand_one(fs, path: str, default_format: str | None = None) -> list[str]:
    if any(c in path for c in "*?["):
        found = [p for p in fs.glob(path) if not fs.isdir(p)]
    elif fs.isdir(path):
        # A folder: the data files in it (not hidden files such as _SUCCESS).
        found = [
            p
            for p in fs.find(path)
            if not os.path.basename(p).startswith((".", "_")) and (format_of(p) is not None or default_format)
        ]
    elif fs.exists(path):
        found = [path]
    else:
        found = []
    return sorted(found)


def _url(fs, path: str) -> str:
    # Local files stay plain paths; remote ones keep their protocol.
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local"):
        return path
    return fs.unstrip_protocol(path)


def count_records(paths: list[str]) -> int:
    """Number of records (for progress reporting): counts lines, TFRecord
    frames, .npy rows from the header and Parquet rows from the footer."""
    return sum(_COUNTERS[format_of(p)](p) for p in paths if format_of(p) is not None)


def iter_records(
    paths: list[str], input_names: list[str] | None, field: str | Sequence[str]
) -> Iterator[Instance]:
    """Instances in data set order. `field` names the data set in errors:
    one string for every path, or one per path (see expand_uris_with_fields).
    Paths from expand_uris given with the same field prefix get their uri's
    own field (f"{field}[i]"). Errors name the file and line (or record) in
    the message."""
    if isinstance(field, str):
        fields = [_path_field(p, field) for p in paths]
    else:
        fields = list(field)
    if len(fields) != len(paths):
        raise ValueError("one field per path")
    for path, f in zip(paths, fields):
        yield from _READERS[require_format(path, f)](path, input_names, f)


def require_format(path: str, field: str | None = None) -> str:
    """The path's data format; InvalidArgument naming the path when it has none."""
    kind = format_of(path)
    if kind is None:
        raise InvalidArgument(f"{path}: unknown data format; use one of {', '.join(FORMATS)} "
                              "(or example_gcs_source.data_format JSONL for files of other names)",
                              field=field if field is not None else getattr(path, "field", None))
    return kind


def _path_field(path: str, field: str) -> str:
    own = getattr(path, "field", None)
    return own if own and own.startswith(field + "[") else field


def iter_batches(records: Iterator[Instance], batch_size: int) -> Iterator[list[Instance]]:
    """Group records into lists of at most batch_size (the last may be shorter)."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    batch: list[Instance] = []
    for r in records:
        batch.append(r)
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch



_READERS = {
    "jsonl": text_formats.read_jsonl,
    "csv": text_formats.read_csv,
    "tfrecord": tfrecord.read_tfrecord,
    "npy": columnar.read_npy,
    "parquet": columnar.read_parquet,
}
_COUNTERS = {
    "jsonl": text_formats.count_jsonl,
    "csv": text_formats.count_csv,
    "tfrecord": tfrecord.count_tfrecord,
    "npy": columnar.count_npy,
    "parquet": columnar.count_parquet,
}
