"""Runs embeddings and searches for Explain, merging concurrent calls.

Two batchers per replica: one merges model runs of calls for the same model
version, the other merges index searches of calls that can share one search
(same model version, neighbor count, crowding count). Restrictions travel per
row, so calls with different filters still share a batch.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import time
import weakref

import numpy as np

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

    # Keys carry the model's identity; the model object itself rides in a side table
    # so keys stay small and hashable.
    def _key(self, served: ServedModel, *extra) -> tuple:
        key = (served.model_id, served.build_id, *extra)
        self._models[(served.model_id, served.build_id)] = served
        return key

    async def embed(self, served: ServedModel, instances: list, deadline: float | None) -> np.ndarray:
        rows = await self.embed_batcher.submit(self._key(served), instances, deadline=deadline)
        return np.stack(rows)

    async def search(self, served: ServedModel, vectors: np.ndarray, restricts: list[list[Namespace]],
                     neighbor_count: int, crowding_count: int, deadline: float | None):
        items = [SearchItem(v, r) for v, r in zip(vectors, restricts)]
        key = self._key(served, neighbor_count, crowding_count)
        return await self.search_batcher.submit(key, items, deadline=deadline)

    def _embed_batch(self, key: tuple, instances: list) -> list[np.ndarray]:
        served = self._models[key[:2]]
        latent = served.require_latent()
        inputs = batch_inputs(instances, latent.input_specs)
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
        self.executor.shutdown(wait=False, cancel_futures=True)
