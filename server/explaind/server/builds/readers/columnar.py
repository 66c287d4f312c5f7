"""Columnar data sets: .npy embedding matrices and Parquet tables."""
from __future__ import annotations

import json
from typing import Any, Iterator

import numpy as np

from explaind.server.builds.readers.formats import open_binary, record_error, to_instance
from explaind.server.runtime.instances import Instance

# Rows decoded at a time: bounds memory on large files.
CHUNK_ROWS = 4096


# ---------------------------------------------------------------- .npy


def _npy_header(f, path: str, field: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
    except ValueError as e:
        raise record_error(path, "header", f"not a .npy file: {e}", field) from None
    if len(shape) != 2 or dtype.kind not in "fiu":
        raise record_error(
            path, "header", f"expected an N x d array of numbers, got shape {shape} dtype {dtype}", field
        )
    return shape, fortran, dtype


def read_npy(path: str, input_names: list[str] | None, field: str) -> Iterator[Instance]:
    """Each row is an embedding record (no id: ids are positions)."""
    with open_binary(path) as f:
        (n, d), fortran, dtype = _npy_header(f, path, field)
        if fortran:  # column-major: rows are not contiguous, read it whole
            data = np.frombuffer(f.read(), dtype=dtype, count=n * d).reshape((d, n)).T
            chunks = [data]
        else:
            chunks = _row_chunks(f, n, d, dtype, path, field)
        i = 0
        for chunk in chunks:
            chunk = np.asarray(chunk, dtype=np.float32)
            bad = ~np.isfinite(chunk).all(axis=1)
            if bad.any():
                row = i + int(np.argmax(bad)) + 1
                raise record_error(path, f"row {row}", "embedding values must be finite", field)
            for row in chunk:
                yield Instance(None, np.array(row), None, None, None)
            i += len(chunk)


def _row_chunks(f, n: int, d: int, dtype: np.dtype, path: str, field: str) -> Iterator[np.ndarray]:
    row_bytes = d * dtype.itemsize
    done = 0
    while done < n:
        rows = min(CHUNK_ROWS, n - done)
        buf = f.read(rows * row_bytes)
        if len(buf) < rows * row_bytes:
            raise record_error(path, f"row {done + len(buf) // max(row_bytes, 1) + 1}", "file is truncated", field)
        yield np.frombuffer(buf, dtype=dtype).reshape(rows, d)
        done += rows


def count_npy(path: str) -> int:
    with open_binary(path) as f:
        (n, _), _, _ = _npy_header(f, path, "")
    return n


# ---------------------------------------------------------------- Parquet

_RESERVED_SCALARS = ("id", "crowding_tag", "restricts", "embedding")


def read_parquet(path: str, input_names: list[str] | None, field: str) -> Iterator[Instance]:
    """Rows as instances: an "embedding" column of lists or input columns,
    plus optional id / crowding_tag / restricts (JSON text or list) columns."""
    _parquet_file(path, field)
    with open_binary(path) as f:
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(f)
        n = 0
        for batch in pf.iter_batches(batch_size=CHUNK_ROWS):
            for row in batch.to_pylist():
                n += 1
                where = f"row {n}"
                yield to_instance(_row_value(row, path, where, field), input_names, path, where, field)


def _parquet_file(path: str, field: str):
    # Open once up front so a file that is not Parquet fails with its name.
    import pyarrow.parquet as pq

    try:
        with open_binary(path) as f:
            return pq.ParquetFile(f).metadata
    except Exception as e:  # pyarrow raises ArrowInvalid and friends
        raise record_error(path, "footer", f"not a Parquet file: {e}", field) from None


def _row_value(row: dict[str, Any], path: str, where: str, field: str) -> dict[str, Any]:
    out = {}
    for k, v in row.items():
        if k in _RESERVED_SCALARS and (v is None or v == ""):
            continue  # a null reserved cell means none
        if k == "restricts" and isinstance(v, str):
            try:
                v = json.loads(v)
            except json.JSONDecodeError as e:
                raise record_error(path, where, f"column 'restricts' is not JSON: {e.msg}", field) from None
        out[k] = v
    return out


def count_parquet(path: str) -> int:
    return _parquet_file(path, "").num_rows
