"""Runs embeddings and searches for Explain, merging concurrent calls.

Four batchers per replica: one merges the embedding runs of calls for the
same model version, one merges index searches of calls that can share one
search (same model version, neighbor count, crowding count), one merges
Predict calls for the same model version, and one runs feature attributions
(calls with the same attribution override). Restrictions travel per row, so
calls with different filters still share a batch. Rows of different shapes
(a signature with a free dimension) never share one.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import time
import weakref

import numpy as np

from explaind.v1 import explanation_pb2

from ..batching import BatcherConfig, DynamicBatcher
from ..index.restricts import Namespace
from .instances import batch_inputs
from .served_model import ServedModel


@dataclasses.dataclass(frozen=True)
class SearchItem:
    vector: np.ndarray
    restricts: list[Namespace]


class Engine:
    def __init__(self, settings, metrics=None):
        threads = settings.search_threads or (os.cpu_count() or 2)
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="engine")
        self.metrics = metrics
        # Weak: an unloaded model must not be kept alive by the batchers' side table.
        self._models: weakref.WeakValueDictionary[tuple, ServedModel] = weakref.WeakValueDictionary()
        config = BatcherConfig(max_batch_size=settings.max_batch_size,
                               max_queue_delay_s=settings.max_queue_delay_ms / 1000.0,
                               max_queued=settings.max_queued)
        self.embed_batcher = DynamicBatcher(self._embed_batch, config, executor=self.executor,
                                            name="embed", metrics=metrics)
        self.search_batcher = DynamicBatcher(self._search_batch, config, executor=self.executor,
                                             name="search", metrics=metrics)
        self.predict_batcher = DynamicBatcher(self._predict_batch, config, executor=self.executor,
                                              name="predict", metrics=metrics)
        # Attributions queue like the rest: bounded, deadlines honoured, on the engine's threads.
        self.attribute_batcher = DynamicBatcher(self._attribute_batch, config, executor=self.executor,
                                                name="attribute", metrics=metrics)

    # Keys carry the model's identity; the model object itself rides in a side table
    # so keys stay small and hashable.
    def _key(self, served: ServedModel, *extra) -> tuple:
        key = (served.model_id, served.build_id, *extra)
        self._models[(served.model_id, served.build_id)] = served
        return key

    async def embed(self, served: ServedModel, instances: list, deadline: float | None) -> np.ndarray:
        rows = _rows(batch_inputs(instances, served.require_latent().input_specs))
        key = self._key(served, _shapes(rows))
        return np.stack(await self.embed_batcher.submit(key, rows, deadline=deadline))

    async def search(self, served: ServedModel, vectors: np.ndarray, restricts: list[list[Namespace]],
                     neighbor_count: int, crowding_count: int, deadline: float | None):
        items = [SearchItem(v, r) for v, r in zip(vectors, restricts)]
        key = self._key(served, neighbor_count, crowding_count)
        return await self.search_batcher.submit(key, items, deadline=deadline)

    async def predict(self, served: ServedModel, instances: list, deadline: float | None) -> list[dict]:
        """The model's own outputs, one dict (output name -> value) per instance."""
        rows = _rows(batch_inputs(instances, served.input_specs()))
        return await self.predict_batcher.submit(self._key(served, _shapes(rows)), rows, deadline=deadline)

    async def attribute(self, served: ServedModel, instances: list,
                        override: explanation_pb2.ExplanationSpecOverride, deadline: float | None) -> list:
        """Feature attributions, one list of Attribution messages per instance. Calls
        with the same attribution override share a run."""
        rows = _rows(batch_inputs(instances, served.features.input_specs))
        relevant = explanation_pb2.ExplanationSpecOverride()
        relevant.CopyFrom(override)
        relevant.ClearField("examples_override")          # no bearing on attributions
        key = self._key(served, _shapes(rows), relevant.SerializeToString(deterministic=True))
        return await self.attribute_batcher.submit(key, rows, deadline=deadline)

    def _attribute_batch(self, key: tuple, rows: list[dict]) -> list:
        served = self._models[key[:2]]
        override = explanation_pb2.ExplanationSpecOverride.FromString(key[3])
        return served.features.explain(_stack(rows), override)

    def _predict_batch(self, key: tuple, rows: list[dict]) -> list[dict]:
        served = self._models[key[:2]]
        outputs = served.predict(_stack(rows))
        return [{name: value[i] for name, value in outputs.items()} for i in range(len(rows))]

    def _embed_batch(self, key: tuple, rows: list[dict]) -> list[np.ndarray]:
        served = self._models[key[:2]]
        latent = served.require_latent()
        inputs = _stack(rows)
        start = time.perf_counter()
        out = latent.embed(inputs)
        if self.metrics is not None:
            self.metrics.embedding_seconds.labels(model=served.model_id).observe(time.perf_counter() - start)
        return list(out)

    def _search_batch(self, key: tuple, items: list[SearchItem]) -> list:
        served = self._models[key[:2]]
        neighbor_count, crowding_count = key[2], key[3]
        queries = np.stack([item.vector for item in items]).astype(np.float32, copy=False)
        restricts = [item.restricts for item in items]
        start = time.perf_counter()
        results = served.require_index().search(
            queries, neighbor_count, restricts=restricts if any(restricts) else None,
            crowding_count=crowding_count)
        if self.metrics is not None:
            self.metrics.search_seconds.labels(model=served.model_id, device=served.device).observe(
                time.perf_counter() - start)
        return results

    async def close(self) -> None:
        await self.embed_batcher.close()
        await self.search_batcher.close()
        await self.predict_batcher.close()
        await self.attribute_batcher.close()
        self.executor.shutdown(wait=False, cancel_futures=True)


# Each call decodes its own instances (so a bad one fails that call alone, never
# the batch it would have joined); batches are then stacked from per-row inputs.
def _rows(inputs: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    count = len(next(iter(inputs.values()))) if inputs else 0
    return [{name: value[i] for name, value in inputs.items()} for i in range(count)]


def _shapes(rows: list[dict[str, np.ndarray]]) -> tuple:
    """Part of a batch key: a signature with a free dimension (lengths, image sizes)
    takes calls of different shapes, which must never be stacked into one batch.
    One call's rows share their shapes (batch_inputs checks it)."""
    return tuple((name, np.shape(value)) for name, value in rows[0].items()) if rows else ()


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
