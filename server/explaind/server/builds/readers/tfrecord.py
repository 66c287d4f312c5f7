"""TFRecord files of tf.train.Example.

The framing (length, CRC, payload, CRC) is read here over fsspec, so remote
URLs work without TensorFlow's file systems; only the Example protobuf class
comes from TensorFlow. The length's CRC is checked (it is 8 bytes: cheap, and
it catches a corrupt or misframed file); the payload's is not, as pure Python
CRC32C over every payload would be slow. GZIP-compressed files are
recognised by suffix (.gz) or, as TensorFlow writes them under a plain
.tfrecord name too, by their magic bytes. Features named like the model's inputs become inputs; "id",
"crowding_tag", "embedding" (float list) and "restricts" (JSON bytes) are
reserved; other features (labels, metadata) are ignored.
"""
from __future__ import annotations

import contextlib
import gzip
import json
import struct
from typing import IO, Any, Iterator

from explaind.server.builds.readers.formats import is_compressed, open_binary, record_error, to_instance
from explaind.server.runtime.instances import Instance

_HEADER = 12  # uint64 length + uint32 masked CRC of the length
_FOOTER = 4  # uint32 masked CRC of the payload


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC32C (Castagnoli)."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _length(header: bytes) -> int:
    (length, crc) = struct.unpack("<QI", header)
    if crc != masked_crc32c(header[:8]):
        raise ValueError("corrupt record header (length CRC mismatch): not a TFRecord file, or damaged")
    return length


@contextlib.contextmanager
def open_records(path: str) -> Iterator[IO[bytes]]:
    """The file's bytes, gunzipped when it is GZIP whatever its name."""
    with open_binary(path) as f:
        head = f.read(_HEADER)
        f.seek(0)
        if not is_compressed(path) and head[:2] == b"\x1f\x8b" and not _valid_header(head):
            with gzip.GzipFile(fileobj=f, mode="rb") as g:
                yield g
        else:
            yield f


def _valid_header(head: bytes) -> bool:
    try:
        return len(head) == _HEADER and _length(head) >= 0
    except ValueError:
        return False


def iter_frames(f: IO[bytes]) -> Iterator[bytes]:
    """Payloads of the TFRecord frames in `f`; ValueError on a truncated or
    corrupt file."""
    while True:
        header = f.read(_HEADER)
        if not header:
            return
        if len(header) < _HEADER:
            raise ValueError("truncated record header")
        length = _length(header)
        payload = f.read(length)
        footer = f.read(_FOOTER)
        if len(payload) < length or len(footer) < _FOOTER:
            raise ValueError("truncated record")
        yield payload


def read_tfrecord(path: str, input_names: list[str] | None, field: str) -> Iterator[Instance]:
    from tensorflow.core.example import example_pb2

    wanted = set(input_names or ())
    with open_records(path) as f:
        n = 0
        frames = iter_frames(f)
        while True:
            where = f"record {n + 1}"
            try:
                payload = next(frames)
            except StopIteration:
                return
            except ValueError as e:
                raise record_error(path, where, str(e), field) from None
            n += 1
            example = example_pb2.Example()
            try:
                example.ParseFromString(payload)
            except Exception as e:  # protobuf's DecodeError
                raise record_error(path, where, f"not a tf.train.Example: {e}", field) from None
            value = _example_value(example, wanted, path, where, field)
            yield to_instance(value, input_names, path, where, field)


def count_tfrecord(path: str) -> int:
    n = 0
    with open_records(path) as f:
        while True:
            header = f.read(_HEADER)
            if len(header) < _HEADER:
                return n
            try:
                length = _length(header)
            except ValueError:
                return n  # reading reports the corruption with its record number
            f.seek(length + _FOOTER, 1)
            n += 1


def _feature_values(feature) -> list[Any]:
    kind = feature.WhichOneof("kind")
    if kind is None:
        return []
    return list(getattr(feature, kind).value)


def _example_value(example, wanted: set[str], path: str, where: str, field: str) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for name, feature in example.features.feature.items():
        values = _feature_values(feature)
        if name in ("id", "crowding_tag"):
            if values:
                v = values[0]
                value[name] = v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v
        elif name == "embedding":
            value[name] = [float(v) for v in values]
        elif name == "restricts":
            if values:
                try:
                    value[name] = json.loads(values[0])
                except (json.JSONDecodeError, UnicodeDecodeError) as e:
                    raise record_error(path, where, f"feature 'restricts' is not JSON: {e}", field) from None
        elif name in wanted:
            value[name] = values
    return value
