"""DynamicBatcher: merging, key isolation, bounds, deadlines, cancellation."""
from __future__ import annotations

import asyncio
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import pytest

from explaind.server.batching import BatcherConfig, DynamicBatcher
from explaind.server.errors import DeadlineExceeded, ResourceExhausted, Unavailable
from explaind.server.metrics import Metrics

pytestmark = pytest.mark.timeout(30)


class Key(NamedTuple):
    """A batch key with a model id, as serving/engine.py's keys have (the metrics' label)."""
    model_id: str
    search: str


def run(coro, timeout: float = 10.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def histogram_count(metrics: Metrics, name: str, **labels) -> tuple[float, float]:
    """(count, sum) of a histogram series on the metrics registry."""
    count = metrics.registry.get_sample_value(f"{name}_count", labels) or 0.0
    total = metrics.registry.get_sample_value(f"{name}_sum", labels) or 0.0
    return count, total


class Recorder:
    """run_batch that records every batch it gets."""

    def __init__(self, delay: float = 0.0):
        self.batches: list[tuple[object, list]] = []
        self.delay = delay

    async def __call__(self, key, items):
        self.batches.append((key, list(items)))
        if self.delay:
            await asyncio.sleep(self.delay)
        return [(key, item * 2) for item in items]


def test_concurrent_submits_match_sequential_and_form_batches():
    metrics = Metrics(gpu_memory=False)
    recorder = Recorder(delay=0.001)
    rng = random.Random(7)
    calls = [(Key("model-a", "search-1") if i % 3 else Key("model-b", "search-1"),
              [i * 10 + j for j in range(rng.randint(1, 4))]) for i in range(200)]

    async def main():
        batcher = DynamicBatcher(recorder, BatcherConfig(max_batch_size=32, max_queue_delay_s=0.005),
                                 metrics=metrics, name="test")
        concurrent = await asyncio.gather(*(batcher.submit(k, items) for k, items in calls))
        await batcher.close()
        assert batcher.queued_items == 0
        one_by_one = DynamicBatcher(Recorder(), BatcherConfig(max_batch_size=32, max_queue_delay_s=0.0))
        sequential = [await one_by_one.submit(k, items) for k, items in calls]
        await one_by_one.close()
        return concurrent, sequential

    concurrent, sequential = run(main())
    assert concurrent == sequential == [[(k, x * 2) for x in items] for k, items in calls]
    # Batching happened: fewer batches than calls, some with several calls' items, none too big.
    count_a, sum_a = histogram_count(metrics, "explaind_batch_size", model="model-a")
    count_b, sum_b = histogram_count(metrics, "explaind_batch_size", model="model-b")
    assert sum_a + sum_b == sum(len(items) for _, items in calls)
    assert count_a + count_b == len(recorder.batches) < 200
    assert max(len(items) for _, items in recorder.batches) > 4
    assert all(len(items) <= 32 for _, items in recorder.batches)
    queue_count, _ = histogram_count(metrics, "explaind_queue_seconds", model="model-a")
    assert queue_count == sum(1 for key, _ in calls if key[0] == "model-a")  # one per call


def test_keys_are_never_mixed_and_calls_never_split():
    recorder = Recorder()
    keys = [("m", 1), ("m", 2), ("n", 1)]

    async def main():
        batcher = DynamicBatcher(recorder, BatcherConfig(max_batch_size=8, max_queue_delay_s=0.01))
        out = await asyncio.gather(*(batcher.submit(keys[i % 3], [i, i, i]) for i in range(60)))
        await batcher.close()
        return out

    out = run(main())
    assert out == [[(keys[i % 3], i * 2)] * 3 for i in range(60)]
    for key, items in recorder.batches:
        # every item of a batch came from calls with this key
        assert all(keys[i % 3] == key for i in items)
        # calls are whole: each value appears 3 times (one call = [i, i, i])
        assert all(items.count(i) == 3 for i in set(items))
        assert len(items) <= 8


def test_call_larger_than_max_batch_runs_alone():
    recorder = Recorder()

    async def main():
        batcher = DynamicBatcher(recorder, BatcherConfig(max_batch_size=4, max_queue_delay_s=0.01))
        big, small = await asyncio.gather(batcher.submit("k", list(range(10))), batcher.submit("k", [100]))
        await batcher.close()
        return big, small

    big, small = run(main())
    assert big == [("k", i * 2) for i in range(10)]
    assert small == [("k", 200)]
    assert sorted(len(items) for _, items in recorder.batches) == [1, 10]


def test_full_queue_is_rejected_at_once():
    metrics = Metrics(gpu_memory=False)
    async def main():
        gate = asyncio.Event()

        async def slow(key, items):
            await gate.wait()
            return items

        batcher = DynamicBatcher(slow, BatcherConfig(max_batch_size=2, max_queue_delay_s=0.0, max_queued=4),
                                 metrics=metrics)
        # first batch starts (and blocks), the next 4 items fill the queue
        first = asyncio.ensure_future(batcher.submit("k", [1, 2]))
        await asyncio.sleep(0.01)
        queued = [asyncio.ensure_future(batcher.submit("k", [i])) for i in range(4)]
        await asyncio.sleep(0.01)
        assert batcher.queued_items == 4
        t0 = time.perf_counter()
        with pytest.raises(ResourceExhausted) as err:
            await batcher.submit("k", [99])
        assert time.perf_counter() - t0 < 0.5  # immediate, not after the queue drains
        assert "4" in str(err.value) and "max_queued" in str(err.value)
        gate.set()
        results = await asyncio.gather(first, *queued)
        await batcher.close()
        return results

    results = run(main())
    assert results == [[1, 2], [0], [1], [2], [3]]
    assert metrics.registry.get_sample_value("explaind_rejected_calls_total", {"reason": "queue_full"}) == 1


def test_deadline_expired_calls_never_reach_run_batch():
    seen: list = []

    async def main():
        gate = asyncio.Event()

        async def slow(key, items):
            seen.extend(items)
            if "block" in items:
                await gate.wait()
            return items

        batcher = DynamicBatcher(slow, BatcherConfig(max_batch_size=1, max_queue_delay_s=0.0))
        loop = asyncio.get_running_loop()
        blocker = asyncio.ensure_future(batcher.submit("k", ["block"]))
        await asyncio.sleep(0.01)
        # queued behind the blocker; their deadline passes before it finishes
        doomed = [asyncio.ensure_future(batcher.submit("k", [f"late{i}"], deadline=loop.time() + 0.02))
                  for i in range(3)]
        alive = asyncio.ensure_future(batcher.submit("k", ["ok"], deadline=loop.time() + 5))
        t0 = loop.time()
        for fut in doomed:
            with pytest.raises(DeadlineExceeded):
                await fut
        assert loop.time() - t0 < 1.0  # answered when the deadline passed, not when the blocker ended
        assert batcher.queued_items == 1
        with pytest.raises(DeadlineExceeded):  # already past: refused without queueing
            await batcher.submit("k", ["past"], deadline=loop.time() - 1)
        gate.set()
        assert await blocker == ["block"]
        assert await alive == ["ok"]
        await batcher.close()

    run(main())
    assert seen == ["block", "ok"]


def test_cancelled_call_leaves_the_queue():
    seen: list = []

    async def main():
        gate = asyncio.Event()

        async def slow(key, items):
            seen.extend(items)
            await gate.wait()
            return items

        batcher = DynamicBatcher(slow, BatcherConfig(max_batch_size=1, max_queue_delay_s=0.0))
        first = asyncio.ensure_future(batcher.submit("k", ["first"]))
        await asyncio.sleep(0.01)
        victim = asyncio.ensure_future(batcher.submit("k", ["victim"]))
        await asyncio.sleep(0.01)
        assert batcher.queued_items == 1
        victim.cancel()
        await asyncio.sleep(0)
        assert batcher.queued_items == 0
        gate.set()
        assert await first == ["first"]
        await batcher.close()

    run(main())
    assert seen == ["first"]


def test_exception_fails_every_call_of_the_batch():
    async def main():
        async def boom(key, items):
            raise ValueError(f"bad batch of {len(items)}")

        batcher = DynamicBatcher(boom, BatcherConfig(max_batch_size=16, max_queue_delay_s=0.02))
        results = await asyncio.gather(*(batcher.submit("k", [i]) for i in range(5)), return_exceptions=True)
        await batcher.close()
        return results

    results = run(main())
    assert all(isinstance(r, ValueError) for r in results)
    assert str(results[0]) == "bad batch of 5"


def test_wrong_result_count_is_an_error():
    async def main():
        batcher = DynamicBatcher(lambda key, items: items[:-1], BatcherConfig(max_queue_delay_s=0.0))
        with pytest.raises(RuntimeError, match="1 results for 2 items"):
            await batcher.submit("k", [1, 2])
        await batcher.close()

    run(main())


def test_blocking_run_batch_runs_in_the_executor():
    loop_threads: set = set()
    batch_threads: set = set()

    def blocking(key, items):
        batch_threads.add(threading.get_ident())
        time.sleep(0.01)  # would stall the loop if run on it
        return [x + 1 for x in items]

    async def main():
        loop_threads.add(threading.get_ident())
        with ThreadPoolExecutor(max_workers=2) as pool:
            batcher = DynamicBatcher(blocking, BatcherConfig(max_batch_size=8, max_queue_delay_s=0.002),
                                     executor=pool)
            out = await asyncio.gather(*(batcher.submit("k", [i]) for i in range(40)))
            await batcher.close()
            return out

    out = run(main())
    assert out == [[i + 1] for i in range(40)]
    assert batch_threads and loop_threads.isdisjoint(batch_threads)


def test_close_runs_queued_work_then_refuses():
    recorder = Recorder()

    async def main():
        batcher = DynamicBatcher(recorder, BatcherConfig(max_batch_size=64, max_queue_delay_s=5.0))
        pending = [asyncio.ensure_future(batcher.submit("k", [i])) for i in range(3)]
        await asyncio.sleep(0)
        t0 = time.perf_counter()
        await batcher.close()  # must not wait the 5 s queue delay
        assert time.perf_counter() - t0 < 1.0
        assert [await p for p in pending] == [[("k", 0)], [("k", 2)], [("k", 4)]]
        with pytest.raises(Unavailable):
            await batcher.submit("k", [1])

    run(main())


def test_config_validation():
    with pytest.raises(ValueError):
        BatcherConfig(max_batch_size=0)
    with pytest.raises(ValueError):
        BatcherConfig(max_queue_delay_s=-1)
    with pytest.raises(ValueError):
        BatcherConfig(max_queued=0)
