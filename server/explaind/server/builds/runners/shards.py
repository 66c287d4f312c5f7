"""Embedding shards: what the Ray actors write to the store, one file per batch
of examples, and what the build process reads back to build the index.

A shard is an .npz (no pickle): "embeddings" (n, d) float32, "positions" (n,)
int64 (the examples' places in the data set) and "meta", the UTF-8 JSON of
their ids, crowding tags and restricts. Its key is its first position, so a
retried batch rewrites the same shard.
"""
from __future__ import annotations

import io
import json

import numpy as np

from ...errors import InvalidArgument
from ...index.attributes import AttributesBuilder
from ...index.restricts import Namespace
from ...store.objects import ObjectStore
from ..embedding import EmbeddedExamples, PreparedBatch
from ..matrix import EmbeddingMatrix


def write_shard(objects: ObjectStore, prefix: str, prepared: PreparedBatch, vectors: np.ndarray) -> str:
    meta = {"ids": prepared.ids, "tags": prepared.tags,
            "restricts": [[[ns.name, list(ns.allow), list(ns.deny)] for ns in r] for r in prepared.restricts]}
    buffer = io.BytesIO()
    np.savez(buffer, embeddings=np.ascontiguousarray(vectors, dtype=np.float32),
             positions=np.arange(prepared.position, prepared.position + prepared.size, dtype=np.int64),
             meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    key = f"{prefix}/{prepared.position:012d}.npz"
    objects.write(key, buffer.getvalue())
    return key


def read_shards(objects: ObjectStore, prefix: str, total: int, field: str,
                matrix_path: str | None = None) -> EmbeddedExamples:
    """Every example, in data set order; the shards must cover positions [0, total)
    once. Shards are named by their first position (zero-padded), so they list in
    order and append to the matrix (in memory, or the file `matrix_path`) and
    the examples' attributes one after another."""
    matrix: EmbeddingMatrix | None = None
    examples = AttributesBuilder()
    width = 0
    for name in sorted(n for n in objects.list(prefix) if n.endswith(".npz")):
        data = objects.read(f"{prefix}/{name}")
        with np.load(io.BytesIO(data), allow_pickle=False) as shard:
            vectors, positions = shard["embeddings"], shard["positions"]
            meta = json.loads(shard["meta"].tobytes())
        if matrix is None:
            matrix, width = EmbeddingMatrix(total, field, matrix_path), vectors.shape[1]
        elif vectors.shape[1] != width:
            raise InvalidArgument(f"examples from {int(positions[0])} on have {vectors.shape[1]}-value embeddings, "
                                  f"other ones {width}", field=field)
        if len(positions) and (positions.min() < len(examples) or positions.max() >= total
                               or np.any(np.diff(positions) != 1)):
            raise InvalidArgument(f"shard {name} does not fit the data set of {total} examples; "
                                  "a data file changed during the build", field=field)
        if len(positions) and positions[0] != len(examples):
            _missing(len(examples), field)
        matrix.append(vectors)
        examples.add(meta["ids"], [[Namespace(n, tuple(a), tuple(d)) for n, a, d in r] for r in meta["restricts"]],
                     meta["tags"])
    if matrix is None or len(examples) != total:
        _missing(len(examples), field)
    return EmbeddedExamples(matrix.result(), examples.result(field))


def _missing(position: int, field: str):
    raise InvalidArgument(f"no embedding came back for example {position}; a data file changed during the build",
                          field=field)
