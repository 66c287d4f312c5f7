"""Owns the loaded models and hands out handles (TF Serving's manager).

A call takes a handle for the model version it started with; an unload or a
newer version replaces the registry's entry but never pulls a model out from
under a call in flight: the old one closes when its last handle is released.
"""
from __future__ import annotations

import contextlib
import threading

from .served_model import ServedModel


class _Entry:
    def __init__(self, served: ServedModel):
        self.served = served
        self.handles = 0
        self.retired = False


class ModelRegistry:
    def __init__(self, metrics=None):
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self.metrics = metrics

    def put(self, served: ServedModel) -> None:
        with self._lock:
            old = self._entries.get(served.model_id)
            self._entries[served.model_id] = _Entry(served)
            self._retire(old)
        self._export(served)

    def remove(self, model_id: str) -> None:
        with self._lock:
            old = self._entries.pop(model_id, None)
            self._retire(old)
        if old is not None and self.metrics is not None:
            self.metrics.forget_model(model_id)
        self._export_count()

    def loaded(self) -> dict[str, str]:
        """model id -> build id of every loaded model."""
        with self._lock:
            return {k: e.served.build_id for k, e in self._entries.items()}

    def peek(self, model_id: str) -> ServedModel | None:
        with self._lock:
            entry = self._entries.get(model_id)
            return entry.served if entry is not None else None

    @contextlib.contextmanager
    def handle(self, model_id: str):
        """Yields the loaded model, or None when it is not loaded."""
        with self._lock:
            entry = self._entries.get(model_id)
            if entry is not None:
                entry.handles += 1
        try:
            yield entry.served if entry is not None else None
        finally:
            if entry is not None:
                with self._lock:
                    entry.handles -= 1
                    close = entry.retired and entry.handles == 0
                if close:
                    entry.served.close()

    def _retire(self, entry: _Entry | None) -> None:
        # Called with the lock held.
        if entry is None:
            return
        entry.retired = True
        if entry.handles == 0:
            entry.served.close()

    def _export(self, served: ServedModel) -> None:
        if self.metrics is not None and served.index is not None:
            info = served.index.info
            self.metrics.index_vectors.labels(model=served.model_id, device=served.device).set(served.index.size)
            self.metrics.index_bytes.labels(model=served.model_id, device=served.device).set(
                float(info.get("index_bytes", 0)))
        self._export_count()

    def _export_count(self) -> None:
        if self.metrics is not None:
            with self._lock:
                self.metrics.models_loaded.set(len(self._entries))
