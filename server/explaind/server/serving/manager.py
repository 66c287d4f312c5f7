"""Owns the models this replica serves (TF Serving's AspiredVersionsManager).

The store's source tells it which version (build) of each model is published
(`set_aspired`); the manager loads what is new or rebuilt, unloads what is
gone, keeps a backoff for versions that fail to load, and hands out handles.

A call takes a handle on the servable it started with. An unload or a newer
version replaces the manager's entry but never pulls a servable out from
under a call in flight: the old one closes when its last handle is released.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time

from explaind.v1 import model_pb2

from ..errors import FailedPrecondition, NotFound, Unavailable
from ..store.retry import StoreUnavailable
from .loader import BuildLoader
from .servables import Servable

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class LoadFailure:
    """A version that failed to load, and when this replica tries it again."""
    build_id: str
    reason: str
    retry_at: float       # time.monotonic()
    backoff: float        # seconds waited before retry_at; doubles on each failure
    transient: bool = False   # the store was unreachable: nothing wrong with the model

    def retry_in(self) -> float:
        return self.retry_at - time.monotonic()


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    first_seconds: float = 5.0
    max_seconds: float = 300.0
    # A store outage says nothing about the model: once the store is back, the
    # replica should serve it soon, not after a backoff grown through the outage.
    transient_first_seconds: float = 1.0
    transient_max_seconds: float = 30.0

    def after(self, previous: LoadFailure | None, build_id: str, transient: bool = False) -> float:
        if previous is not None and previous.build_id == build_id:
            return min(2 * previous.backoff, self.transient_max_seconds if transient else self.max_seconds)
        return self.transient_first_seconds if transient else self.first_seconds


class _Entry:
    def __init__(self, servable: Servable):
        self.servable = servable
        self.handles = 0
        self.retired = False


class ModelManager:
    def __init__(self, loader: BuildLoader, metrics=None, retry: RetryPolicy = RetryPolicy()):
        self.loader = loader
        self.metrics = metrics
        self.retry = retry
        self._entries: dict[str, _Entry] = {}
        self._failures: dict[str, LoadFailure] = {}
        self._lock = threading.Lock()           # guards _entries and handle counts
        self._load_lock = threading.Lock()      # one load at a time: loads are large

    # --- what the source reports ---
    def set_aspired(self, published: dict[str, str]) -> None:
        """`published`: model id -> build id of every published model. Blocking."""
        for model_id in self.loaded().keys() - published.keys():
            self.unload(model_id)
            log.info("model unloaded", extra={"model": f"models/{model_id}"})
        for model_id in self._failures.keys() - published.keys():
            self._failures.pop(model_id, None)     # deleted: a new upload of the id starts afresh
        for model_id, build_id in published.items():
            if self.loaded().get(model_id) != build_id and self.failure(model_id, build_id) is None:
                try:
                    self.load(model_id)
                except Exception:  # noqa: BLE001 - logged by load(); one bad model must not stop the others
                    pass

    # --- loading and unloading ---
    def load(self, model_id: str) -> Servable | None:
        """Loads the published version of one model now (also on a cache miss)."""
        with self._load_lock:
            record = self.loader.published(model_id)
            if record is None:
                return None
            current = self.peek(model_id)
            if current is not None and current.build_id == record.build_id:
                return current
            try:
                servable = self.loader.load(record)
            except Exception as e:
                previous = self._failures.get(model_id)
                transient = isinstance(e, StoreUnavailable)
                backoff = self.retry.after(previous, record.build_id, transient)
                if transient:
                    log.warning("model not loaded, the store is unreachable; retrying in %.0fs: %s", backoff, e,
                                extra={"model": record.model.name})
                else:
                    log.exception("model failed to load; retrying in %.0fs", backoff,
                                  extra={"model": record.model.name})
                self._failures[model_id] = LoadFailure(record.build_id, f"{type(e).__name__}: {e}",
                                                       time.monotonic() + backoff, backoff, transient)
                raise
            self._failures.pop(model_id, None)
            self._put(servable)
            return servable

    def unload(self, model_id: str) -> None:
        with self._lock:
            old = self._entries.pop(model_id, None)
            self._retire(old)
        if old is not None and self.metrics is not None:
            self.metrics.forget_model(model_id)
        self._export_count()

    def failure(self, model_id: str, build_id: str) -> LoadFailure | None:
        """The failure of this build while its backoff runs, else None."""
        failed = self._failures.get(model_id)
        if failed is None or failed.build_id != build_id or failed.retry_in() <= 0:
            return None
        return failed

    def loaded(self) -> dict[str, str]:
        """model id -> build id of every loaded model."""
        with self._lock:
            return {k: e.servable.build_id for k, e in self._entries.items()}

    def peek(self, model_id: str) -> Servable | None:
        with self._lock:
            entry = self._entries.get(model_id)
            return entry.servable if entry is not None else None

    # --- handles ---
    @contextlib.asynccontextmanager
    async def serving(self, model_id: str):
        """The servable of a model, held for the whole call; loaded first on a miss."""
        await self._ensure_loaded(model_id)
        with self._handle(model_id) as servable:
            if servable is None:
                raise NotFound(f"model models/{model_id} not found", field="name")
            yield servable

    async def _ensure_loaded(self, model_id: str) -> None:
        if self.peek(model_id) is not None:
            return
        record = await asyncio.to_thread(self.loader.record, model_id)
        if record is None:
            raise NotFound(f"model models/{model_id} not found", field="name")
        if record.model.state == model_pb2.Model.BUILDING:
            raise FailedPrecondition(f"model models/{model_id} is still building "
                                     f"(operation {record.operation})", field="name")
        # A model that fails to load is not loaded again by every call: the backoff
        # decides when this replica tries again; another replica may serve it.
        failure = self.failure(model_id, record.build_id)
        if failure is None:
            try:
                await asyncio.to_thread(self.load, model_id)
                return
            except Exception:  # noqa: BLE001 - recorded by load(), answered below
                failure = self.failure(model_id, record.build_id)
        why, retry_in = (failure.reason, failure.retry_in()) if failure else ("unknown error", 0.0)
        raise Unavailable(f"model models/{model_id} failed to load on this replica ({why}); "
                          f"it tries again in {retry_in:.0f}s, another replica may serve it")

    @contextlib.contextmanager
    def _handle(self, model_id: str):
        with self._lock:
            entry = self._entries.get(model_id)
            if entry is not None:
                entry.handles += 1
        try:
            yield entry.servable if entry is not None else None
        finally:
            if entry is not None:
                with self._lock:
                    entry.handles -= 1
                    close = entry.retired and entry.handles == 0
                if close:
                    entry.servable.close()

    def _put(self, servable: Servable) -> None:
        with self._lock:
            old = self._entries.get(servable.model_id)
            self._entries[servable.model_id] = _Entry(servable)
            self._retire(old)
        self._export(servable)

    def _retire(self, entry: _Entry | None) -> None:
        # Called with the lock held.
        if entry is None:
            return
        entry.retired = True
        if entry.handles == 0:
            entry.servable.close()

    # --- metrics ---
    def _export(self, servable: Servable) -> None:
        index = servable.index
        if self.metrics is not None and index is not None:
            labels = {"model": servable.model_id, "device": servable.device}
            self.metrics.index_vectors.labels(**labels).set(index.live_count)
            self.metrics.index_bytes.labels(**labels).set(float(index.info.index_bytes))
            self.metrics.index_mapped_bytes.labels(**labels).set(float(index.info.mapped_bytes))
            if index.info.recall is not None:
                self.metrics.index_recall.labels(**labels).set(index.info.recall.recall)
                self.metrics.index_recall_floor.labels(**labels).set(index.info.recall.floor)
        self._export_count()

    def _export_count(self) -> None:
        if self.metrics is not None:
            with self._lock:
                self.metrics.models_loaded.set(len(self._entries))
