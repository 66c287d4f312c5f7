"""Runs the data plane's computations, merging concurrent calls into batches.

Four batchers per replica: model runs of Explain calls for the same servable
(each row gets its latent vector and the model's outputs from one run), index searches of calls that can share one search (same servable, neighbor
count and crowding count), Predict runs, and feature attributions of calls
with the same attribution override. Restrictions travel per row, so calls with
different filters still share a search. Rows of different shapes (a signature
with a free dimension) never share a batch.

A batch key holds the servable itself: the call that queued it holds a handle,
so the servable outlives its queued work, and a newer version of the model
gets keys of its own.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import time

import numpy as np

from explaind.v1 import explanation_pb2

from ..batching import BatcherConfig, DynamicBatcher
from ..index.restricts import Namespace
from ..runtime.instances import Instance, batch_inputs
from .cpu import available_cores
from .servables import AttributionServable, ExampleServable, Servable

Shapes = tuple  # ((input name, per-row shape), ...): calls of different shapes never share a batch


@dataclasses.dataclass(frozen=True)
class BatchKey:
    """Calls with equal keys may share a batch. Holds the servable (compared by identity)."""
    servable: Servable

    @property
    def model_id(self) -> str:          # the batchers' metric label
        return self.servable.model_id


@dataclasses.dataclass(frozen=True)
class EmbedKey(BatchKey):
    """Rows an example-based model embeds; the same run answers its outputs beside."""
    shapes: Shapes


@dataclasses.dataclass(frozen=True)
class SearchKey(BatchKey):
    neighbor_count: int
    crowding_count: int


@dataclasses.dataclass(frozen=True)
class PredictKey(BatchKey):
    shapes: Shapes


@dataclasses.dataclass(frozen=True)
class AttributeKey(BatchKey):
    shapes: Shapes
    override: bytes       # the attribution part of the override, serialized: equal bytes share a run

    def parsed_override(self) -> explanation_pb2.ExplanationSpecOverride:
        return explanation_pb2.ExplanationSpecOverride.FromString(self.override)


@dataclasses.dataclass(frozen=True)
class SearchRow:
    vector: np.ndarray
    restricts: list[Namespace]


@dataclasses.dataclass(frozen=True)
class EmbeddedRow:
    vector: np.ndarray                   # the instance's latent embedding
    outputs: dict[str, np.ndarray]       # the model's outputs for it (output name -> value)


class Engine:
    def __init__(self, settings, metrics=None):
        threads = settings.search_threads or available_cores()     # the container's share, not the host's
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="engine")
        self.metrics = metrics
        config = BatcherConfig(max_batch_size=settings.max_batch_size,
                               max_queue_delay_s=settings.max_queue_delay_ms / 1000.0,
                               max_queued=settings.max_queued)
        self.embed_batcher = self._batcher(self._embed_batch, config, "embed")
        self.search_batcher = self._batcher(self._search_batch, config, "search")
        self.predict_batcher = self._batcher(self._predict_batch, config, "predict")
        # Attributions queue like the rest: bounded, deadlines honoured, on the engine's threads.
        self.attribute_batcher = self._batcher(self._attribute_batch, config, "attribute")

    def _batcher(self, run, config: BatcherConfig, name: str) -> DynamicBatcher:
        return DynamicBatcher(run, config, executor=self.executor, name=name, metrics=self.metrics)

    # --- what the servables ask for ---
    async def embed_and_predict(self, servable: ExampleServable, instances: list[Instance],
                                deadline: float | None) -> tuple[np.ndarray, list[dict]]:
        """The instances' latent embeddings (B, d) and the model's own outputs, one dict (output
        name -> value) per instance, from one model run per batch."""
        rows = _rows(batch_inputs(instances, servable.input_specs()))
        embedded = await self.embed_batcher.submit(EmbedKey(servable, _shapes(rows)), rows, deadline=deadline)
        return np.stack([row.vector for row in embedded]), [row.outputs for row in embedded]

    async def search(self, servable: ExampleServable, vectors: np.ndarray, restricts: list[list[Namespace]],
                     neighbor_count: int, crowding_count: int, deadline: float | None):
        rows = [SearchRow(v, r) for v, r in zip(vectors, restricts)]
        key = SearchKey(servable, neighbor_count, crowding_count)
        return await self.search_batcher.submit(key, rows, deadline=deadline)

    async def predict(self, servable: Servable, instances: list[Instance], deadline: float | None) -> list[dict]:
        """The model's own outputs, one dict (output name -> value) per instance."""
        rows = _rows(batch_inputs(instances, servable.input_specs()))
        return await self.predict_batcher.submit(PredictKey(servable, _shapes(rows)), rows, deadline=deadline)

    async def attribute(self, servable: AttributionServable, instances: list[Instance],
                        override: explanation_pb2.ExplanationSpecOverride, deadline: float | None) -> list:
        """Feature attributions and the model's outputs, one servables.AttributedRow per instance."""
        rows = _rows(batch_inputs(instances, servable.input_specs()))
        relevant = explanation_pb2.ExplanationSpecOverride()
        relevant.CopyFrom(override)
        relevant.ClearField("examples_override")          # no bearing on attributions
        key = AttributeKey(servable, _shapes(rows), relevant.SerializeToString(deterministic=True))
        return await self.attribute_batcher.submit(key, rows, deadline=deadline)

    # --- the batches, on the engine's threads ---
    def _attribute_batch(self, key: AttributeKey, rows: list[dict]) -> list:
        return key.servable.attribute(_stack(rows), key.parsed_override())

    def _predict_batch(self, key: PredictKey, rows: list[dict]) -> list[dict]:
        return _per_row(key.servable.predict(_stack(rows)), len(rows))

    def _embed_batch(self, key: EmbedKey, rows: list[dict]) -> list[EmbeddedRow]:
        start = time.perf_counter()
        vectors, outputs = key.servable.embed_and_predict(_stack(rows))
        if self.metrics is not None:
            self.metrics.embedding_seconds.labels(model=key.model_id).observe(time.perf_counter() - start)
        return [EmbeddedRow(vector, row) for vector, row in zip(vectors, _per_row(outputs, len(rows)))]

    def _search_batch(self, key: SearchKey, rows: list[SearchRow]) -> list:
        servable = key.servable
        queries = np.stack([row.vector for row in rows]).astype(np.float32, copy=False)
        restricts = [row.restricts for row in rows]
        labels = {"model": key.model_id, "device": servable.device}
        violations = self.metrics.filter_violations.labels(**labels).inc if self.metrics is not None else None
        start = time.perf_counter()
        results = servable.index.search(queries, key.neighbor_count,
                                        restricts=restricts if any(restricts) else None,
                                        crowding_count=key.crowding_count, on_filter_violation=violations)
        if self.metrics is not None:
            self.metrics.search_seconds.labels(**labels).observe(time.perf_counter() - start)
        return results

    async def close(self) -> None:
        for batcher in (self.embed_batcher, self.search_batcher, self.predict_batcher, self.attribute_batcher):
            await batcher.close()
        self.executor.shutdown(wait=False, cancel_futures=True)


# Each call decodes its own instances (so a bad one fails that call alone, never
# the batch it would have joined); batches are then stacked from per-row inputs.
def _rows(inputs: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    count = len(next(iter(inputs.values()))) if inputs else 0
    return [{name: value[i] for name, value in inputs.items()} for i in range(count)]


def _shapes(rows: list[dict[str, np.ndarray]]) -> Shapes:
    """One call's rows share their shapes (batch_inputs checks it)."""
    return tuple((name, np.shape(value)) for name, value in rows[0].items()) if rows else ()


def _per_row(outputs: dict[str, np.ndarray], count: int) -> list[dict[str, np.ndarray]]:
    """A batch's outputs (name -> (B, ...)) -> one dict per row."""
    return [{name: value[i] for name, value in outputs.items()} for i in range(count)]


def _stack(rows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    out = {}
    for name, first in rows[0].items():
        if isinstance(first, (bytes, str)):
            # Keep string inputs as object arrays: np.stack would make fixed-width
            # bytes and silently drop trailing NUL bytes of binary payloads.
            column = np.empty(len(rows), dtype=object)
            column[:] = [row[name] for row in rows]
            out[name] = column
        else:
            out[name] = np.stack([row[name] for row in rows])
    return out
