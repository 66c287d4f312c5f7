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
from ...index.restricts import Namespace
from ...store.objects import ObjectStore
from ..embedding import EmbeddedExamples, PreparedBatch


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


def read_shards(objects: ObjectStore, prefix: str, total: int, field: str) -> EmbeddedExamples:
    """Every example, in data set order; the shards must cover positions [0, total) once."""
    matrix = None
    seen = np.zeros(total, dtype=bool)
    ids: list = [None] * total
    restricts: list = [None] * total
    tags: list = [None] * total
    for name in objects.list(prefix):
        if not name.endswith(".npz"):
            continue
        data = objects.read(f"{prefix}/{name}")
        with np.load(io.BytesIO(data), allow_pickle=False) as shard:
            vectors, positions = shard["embeddings"], shard["positions"]
            meta = json.loads(shard["meta"].tobytes())
        if matrix is None:
            matrix = np.empty((total, vectors.shape[1]), np.float32)
        elif vectors.shape[1] != matrix.shape[1]:
            raise InvalidArgument(f"examples from {int(positions[0])} on have {vectors.shape[1]}-value embeddings, "
                                  f"other ones {matrix.shape[1]}", field=field)
        if len(positions) and (positions.min() < 0 or positions.max() >= total or seen[positions].any()):
            raise InvalidArgument(f"shard {name} does not fit the data set of {total} examples; "
                                  "a data file changed during the build", field=field)
        seen[positions] = True
        matrix[positions] = vectors
        for j, p in enumerate(positions.tolist()):
            ids[p] = meta["ids"][j]
            tags[p] = meta["tags"][j]
            restricts[p] = [Namespace(n, tuple(a), tuple(d)) for n, a, d in meta["restricts"][j]]
    if matrix is None or not seen.all():
        missing = int(np.flatnonzero(~seen)[0]) if total else 0
        raise InvalidArgument(f"no embedding came back for example {missing}; a data file changed during the build",
                              field=field)
    return EmbeddedExamples(matrix, ids, restricts, tags)
