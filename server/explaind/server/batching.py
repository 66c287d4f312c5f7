"""Dynamic batching for asyncio, in the manner of TF Serving's batcher.

Concurrent calls that share a key (a model plus everything that must be equal
to share one model run and one index search) are merged into one `run_batch`
call. A batch is cut when it holds `max_batch_size` items or its oldest call
has waited `max_queue_delay_s`. Batches of one key run one after another (a
model run or a GPU index search is not assumed to be safe to run twice at
once, and while one batch runs the next one fills up); different keys run
concurrently.
"""
from __future__ import annotations

import asyncio
import collections
import inspect
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Hashable

from explaind.server.errors import DeadlineExceeded, ResourceExhausted, Unavailable

RunBatch = Callable[[Hashable, list], "Awaitable[list] | list"]


@dataclass
class BatcherConfig:
    max_batch_size: int = 64
    max_queue_delay_s: float = 0.002
    max_queued: int = 1024  # queue bound, in items, over all keys

    def __post_init__(self):
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.max_queue_delay_s < 0:
            raise ValueError(f"max_queue_delay_s must be >= 0, got {self.max_queue_delay_s}")
        if self.max_queued < 1:
            raise ValueError(f"max_queued must be >= 1, got {self.max_queued}")


def model_of_key(key: Hashable) -> str:
    """Metric label for a key: its `model_id` (serving/engine.py's keys have one), else the key itself."""
    return str(getattr(key, "model_id", key))


class _Call:
    """One submit(): its items wait together and are never split across batches."""

    __slots__ = ("items", "future", "deadline", "enqueued_at", "started", "deadline_timer")

    def __init__(self, items: list, future: asyncio.Future, deadline: float | None, now: float):
        self.items = items
        self.future = future
        self.deadline = deadline
        self.enqueued_at = now
        self.started = False
        self.deadline_timer: asyncio.TimerHandle | None = None


class _KeyQueue:
    def __init__(self):
        self.calls: collections.deque[_Call] = collections.deque()
        self.items = 0
        self.wakeup = asyncio.Event()
        self.worker: asyncio.Task | None = None


class DynamicBatcher:
    def __init__(self, run_batch: RunBatch, config: BatcherConfig | None = None,
                 executor: Executor | None = None, name: str = "", *,
                 metrics=None):
        """run_batch(key, items) returns one result per item, in order. A coroutine
        function is awaited on the loop; a plain (blocking) function runs in
        `executor` (None: the loop's default executor) so the loop never blocks.
        `metrics` (explaind.server.metrics.Metrics) gets batch sizes and queue
        times labelled by `model_of_key(key)`."""
        self._run_batch = run_batch
        self._is_async = inspect.iscoroutinefunction(run_batch) or inspect.iscoroutinefunction(
            type(run_batch).__call__)       # an object whose __call__ is async
        self.config = config or BatcherConfig()
        self._executor = executor
        self.name = name
        self._metrics = metrics
        self._queues: dict[Hashable, _KeyQueue] = {}
        self._queued_items = 0
        self._closing = False

    @property
    def queued_items(self) -> int:
        """Items waiting in the queue (not yet handed to run_batch)."""
        return self._queued_items

    async def submit(self, key: Hashable, items: list[Any], deadline: float | None = None) -> list[Any]:
        """Queue `items` under `key` and return their results, in order.

        `deadline` is a loop.time() value: if it passes while the call is still
        queued the call is dropped (never computed) with DeadlineExceeded.
        """
        items = list(items)
        if not items:
            return []
        if self._closing:
            raise Unavailable("the batching queue is closed: the server is shutting down")
        loop = asyncio.get_running_loop()
        now = loop.time()
        if deadline is not None and deadline <= now:
            self._reject("deadline")
            raise DeadlineExceeded("deadline expired before the call was queued")
        bound = self.config.max_queued
        if self._queued_items + len(items) > bound:
            self._reject("queue_full")
            raise ResourceExhausted(
                f"batching queue{' ' + self.name if self.name else ''} is full: {self._queued_items} of "
                f"{bound} items queued, this call adds {len(items)}; retry later, or raise max_queued "
                f"or add replicas")

        call = _Call(items, loop.create_future(), deadline, now)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = _KeyQueue()
        queue.calls.append(call)
        queue.items += len(items)
        self._queued_items += len(items)
        if deadline is not None:
            call.deadline_timer = loop.call_at(deadline, self._expire, key, call)
        if queue.worker is None:
            queue.worker = loop.create_task(self._work(key, queue), name=f"batcher[{self.name}]:{key!r}")
        elif queue.items >= self.config.max_batch_size:
            queue.wakeup.set()  # a full batch need not wait (otherwise the head's delay decides)

        try:
            return await call.future
        except asyncio.CancelledError:
            # The caller went away: free its place unless its batch already started.
            self._unqueue(key, call)
            raise

    async def close(self) -> None:
        """Refuse new calls, run everything already queued (without waiting for
        the queue delay), then return."""
        self._closing = True
        workers = [q.worker for q in self._queues.values() if q.worker is not None]
        for q in self._queues.values():
            q.wakeup.set()
        if workers:
            await asyncio.gather(*workers, return_exceptions=True)

    # -- queue bookkeeping -------------------------------------------------

    def _reject(self, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.rejected_calls.labels(reason=reason).inc()

    def _unqueue(self, key: Hashable, call: _Call) -> bool:
        """Remove a call that has not started; False when it already started."""
        if call.started:
            return False
        queue = self._queues.get(key)
        if queue is None:
            return False
        try:
            queue.calls.remove(call)
        except ValueError:
            return False
        queue.items -= len(call.items)
        self._queued_items -= len(call.items)
        call.started = True  # settled: never to be run
        if call.deadline_timer is not None:
            call.deadline_timer.cancel()
        queue.wakeup.set()  # the head may have changed
        return True

    def _expire(self, key: Hashable, call: _Call) -> None:
        if self._unqueue(key, call) and not call.future.done():
            self._reject("deadline")
            call.future.set_exception(DeadlineExceeded(
                f"deadline expired after {asyncio.get_running_loop().time() - call.enqueued_at:.3f}s "
                "in the batching queue"))

    def _cut(self, queue: _KeyQueue, now: float) -> list[_Call]:
        """Take calls from the head up to max_batch_size items; a call larger
        than that runs alone. Calls past their deadline are dropped here too."""
        limit = self.config.max_batch_size
        batch: list[_Call] = []
        size = 0
        while queue.calls:
            call = queue.calls[0]
            n = len(call.items)
            if call.deadline is None or call.deadline > now:
                if batch and size + n > limit:
                    break
            queue.calls.popleft()
            queue.items -= n
            self._queued_items -= n
            call.started = True
            if call.deadline_timer is not None:
                call.deadline_timer.cancel()
            if call.future.done():  # cancelled while queued
                continue
            if call.deadline is not None and call.deadline <= now:
                self._reject("deadline")
                call.future.set_exception(DeadlineExceeded("deadline expired in the batching queue"))
                continue
            batch.append(call)
            size += n
            if size >= limit:
                break
        return batch

    # -- the per-key worker ------------------------------------------------

    async def _work(self, key: Hashable, queue: _KeyQueue) -> None:
        loop = asyncio.get_running_loop()
        limit = self.config.max_batch_size
        delay = self.config.max_queue_delay_s
        try:
            while queue.calls:
                if queue.items < limit and not self._closing:
                    wait = queue.calls[0].enqueued_at + delay - loop.time()
                    if wait > 0:
                        queue.wakeup.clear()
                        try:
                            await asyncio.wait_for(queue.wakeup.wait(), wait)
                        except asyncio.TimeoutError:
                            pass
                        continue  # re-check: the head may have left, or the batch filled up
                batch = self._cut(queue, loop.time())
                if batch:
                    await self._run(key, batch, loop)
        finally:
            queue.worker = None
            if queue.calls:  # only if the worker itself was cancelled: do not strand calls
                for call in list(queue.calls):
                    if self._unqueue(key, call) and not call.future.done():
                        call.future.set_exception(Unavailable("batcher stopped"))
            if self._queues.get(key) is queue and not queue.calls:
                del self._queues[key]

    async def _run(self, key: Hashable, batch: list[_Call], loop: asyncio.AbstractEventLoop) -> None:
        items = [item for call in batch for item in call.items]
        now = loop.time()
        if self._metrics is not None:
            model = model_of_key(key)
            self._metrics.batch_size.labels(model=model).observe(len(items))
            queue_hist = self._metrics.queue_seconds.labels(model=model)
            for call in batch:
                queue_hist.observe(now - call.enqueued_at)
        try:
            if self._is_async:
                results = await self._run_batch(key, items)
            else:
                results = await loop.run_in_executor(self._executor, self._run_batch, key, items)
            results = list(results)
            if len(results) != len(items):
                raise RuntimeError(
                    f"run_batch returned {len(results)} results for {len(items)} items (key {key!r})")
        except asyncio.CancelledError:
            for call in batch:
                if not call.future.done():
                    call.future.set_exception(Unavailable("batcher stopped"))
            raise
        except Exception as exc:  # one failure fails the whole batch, as it ran as one
            for call in batch:
                if not call.future.done():
                    call.future.set_exception(exc)
            return
        start = 0
        for call in batch:
            n = len(call.items)
            if not call.future.done():  # a caller may have been cancelled meanwhile
                call.future.set_result(results[start:start + n])
            start += n
