"""Tells the serving side which model versions are published (TF Serving's Source).

Every poll it lists the published models (and their builds) and hands that
map to a callback; the serving side's manager loads and unloads. The store is
the one source of truth, so a restarted replica serves again after its first
poll without rebuilding anything. Nothing here imports the serving side.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

from .models import ModelStore
from .retry import StoreUnavailable

log = logging.getLogger(__name__)


class PublishedModelsSource:
    def __init__(self, models: ModelStore, on_published: Callable[[dict[str, str]], None], poll_seconds: float):
        """`on_published(model id -> build id)` runs after each listing (blocking, on a worker thread)."""
        self.models = models
        self.on_published = on_published
        self.poll_seconds = poll_seconds

    def poll(self) -> None:
        """One listing, reported (blocking)."""
        self.on_published(self.models.published_builds())

    async def run(self, stop: asyncio.Event, on_tick: Callable[[], None] | None = None) -> None:
        """Polls until `stop` is set; `on_tick` runs after each poll (housekeeping)."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                await loop.run_in_executor(None, self.poll)
                if on_tick is not None:
                    await loop.run_in_executor(None, on_tick)
            except StoreUnavailable as e:
                # What is loaded keeps serving; what changed meanwhile is seen at the first poll after.
                log.warning("store poll failed: %s", e)
            except Exception:  # noqa: BLE001 - a bad poll must not stop watching
                log.exception("store poll failed")
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.poll_seconds)
            except asyncio.TimeoutError:
                pass
