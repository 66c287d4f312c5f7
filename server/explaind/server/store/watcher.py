"""Keeps this replica's registry in step with the store (TF Serving's source).

Every poll it reads which models are published (and at which build), loads
what is new or rebuilt, and unloads what was deleted. The store is the one
source of truth, so a restarted replica serves again after its first sync
without rebuilding anything.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time

from ..runtime.registry import ModelRegistry
from ..runtime.served_model import ServedModel
from .models import ModelStore

log = logging.getLogger(__name__)
FIRST_RETRY_SECONDS = 5.0
MAX_RETRY_SECONDS = 300.0


class StoreWatcher:
    def __init__(self, models: ModelStore, registry: ModelRegistry, cache_dir: str,
                 use_gpu: bool | None, poll_seconds: float):
        self.models = models
        self.registry = registry
        self.cache_dir = cache_dir
        self.use_gpu = use_gpu
        self.poll_seconds = poll_seconds
        self._load_lock = threading.Lock()
        # model id -> (build id, when to try again, backoff, why): a build that failed to
        # load is retried later (a store or network error passes), not on every poll or call.
        self.failed: dict[str, tuple[str, float, float, str]] = {}

    def sync(self) -> None:
        """One pass: load new or rebuilt models, unload deleted ones (blocking)."""
        published = self.models.published_builds()
        loaded = self.registry.loaded()
        for model_id in loaded.keys() - published.keys():
            self.registry.remove(model_id)
            log.info("model unloaded", extra={"model": f"models/{model_id}"})
        for model_id in self.failed.keys() - published.keys():
            del self.failed[model_id]          # deleted: a new upload of the id starts afresh
        for model_id, build_id in published.items():
            if loaded.get(model_id) != build_id and self.recent_failure(model_id, build_id) is None:
                try:
                    self.load(model_id)
                except Exception:  # noqa: BLE001 - logged by load(); one bad model must not stop the others
                    pass

    def recent_failure(self, model_id: str, build_id: str) -> tuple[str, float] | None:
        """(why, seconds until the next try) while a failed load of this build backs off."""
        failed = self.failed.get(model_id)
        if failed is None or failed[0] != build_id or time.monotonic() >= failed[1]:
            return None
        return failed[3], failed[1] - time.monotonic()

    def load(self, model_id: str) -> ServedModel | None:
        """Loads the published version of one model now (also used on a cache miss)."""
        with self._load_lock:
            record = self.models.get_published(model_id)
            if record is None:
                return None
            current = self.registry.peek(model_id)
            if current is not None and current.build_id == record.build_id:
                return current
            try:
                served = ServedModel.load(record, self.models, self.cache_dir, self.use_gpu)
            except Exception as e:
                previous = self.failed.get(model_id)
                backoff = min(2 * previous[2], MAX_RETRY_SECONDS) if previous and previous[0] == record.build_id \
                    else FIRST_RETRY_SECONDS
                log.exception("model failed to load; retrying in %.0fs", backoff, extra={"model": record.model.name})
                self.failed[model_id] = (record.build_id, time.monotonic() + backoff, backoff,
                                         f"{type(e).__name__}: {e}")
                raise
            self.failed.pop(model_id, None)
            self.registry.put(served)
            return served

    async def run(self, stop: asyncio.Event, on_tick=None) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                await loop.run_in_executor(None, self.sync)
                if on_tick is not None:
                    await loop.run_in_executor(None, on_tick)
            except Exception:  # noqa: BLE001 - a bad poll must not stop watching
                log.exception("store poll failed")
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.poll_seconds)
            except asyncio.TimeoutError:
                pass
