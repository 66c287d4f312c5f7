"""The model manager: loading published builds (processes sharing a cache),
retries after a failed load, and handles that outlive an unload."""
import asyncio
import os
import threading
import time

import numpy as np
import pytest

from explaind.server.errors import Unavailable
from explaind.server.index import ExampleIndex, SearchConfig
from explaind.server.serving.loader import BuildLoader
from explaind.server.serving.manager import ModelManager, RetryPolicy
from explaind.server.store.models import ModelRecord, ModelStore
from explaind.server.store.objects import ObjectStore
from explaind.server.store.source import PublishedModelsSource
from explaind.v1 import explanation_pb2, model_pb2


def _publish(tmp_path, model_id="m", build_id="b1") -> ModelStore:
    models = ModelStore(ObjectStore(str(tmp_path / "store")))
    vectors = np.random.default_rng(0).normal(size=(500, 8)).astype(np.float32)
    index = ExampleIndex.build(vectors, [str(i) for i in range(500)], None, None,
                               SearchConfig(dimensions=8, distance="DOT_PRODUCT_DISTANCE", feature_norm="NONE",
                                            algorithm="brute_force"))
    folder = tmp_path / f"built-{model_id}-{build_id}"
    folder.mkdir()
    index.save(str(folder))
    models.upload_build(model_id, build_id, str(folder))
    spec = explanation_pb2.ExplanationSpec()
    spec.parameters.examples.neighbor_count = 5
    record = ModelRecord(model=model_pb2.Model(name=f"models/{model_id}", state=model_pb2.Model.READY,
                                               explanation_spec=spec), build_id=build_id)
    if models.get(model_id) is None:
        models.claim(record)
    models.publish(record)
    return models


class FlakyLoader(BuildLoader):
    """A real loader whose first `failures` loads raise."""

    def __init__(self, models, cache, failures: int, error: Exception):
        super().__init__(models, cache, use_gpu=False)
        self.failures = failures
        self.error = error
        self.attempts = 0

    def load(self, record):
        self.attempts += 1
        if self.attempts <= self.failures:
            raise self.error
        return super().load(record)


def test_processes_sharing_a_cache_each_end_with_the_whole_build(tmp_path):
    models = _publish(tmp_path)
    record = models.get_published("m")
    cache = str(tmp_path / "cache")
    loaded, errors = [], []

    def load():
        try:
            loaded.append(BuildLoader(models, cache, use_gpu=False).load(record))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=load) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(loaded) == 6
    assert all(s.index.size == 500 for s in loaded)
    assert os.listdir(os.path.join(cache, "m")) == ["b1"]      # no partial folders left behind


def test_a_failed_load_is_retried_after_a_backoff_not_given_up(tmp_path):
    models = _publish(tmp_path)
    loader = FlakyLoader(models, str(tmp_path / "cache"), 1, OSError("store unreachable"))
    manager = ModelManager(loader, retry=RetryPolicy(first_seconds=0.3))
    source = PublishedModelsSource(models, manager.set_aspired, 0.05)
    source.poll()                        # fails, and does not raise out of the poll
    source.poll()                        # within the backoff: not tried again
    assert loader.attempts == 1 and manager.loaded() == {}
    assert manager.failure("m", "b1").reason == "OSError: store unreachable"
    time.sleep(0.35)
    source.poll()
    assert loader.attempts == 2 and manager.loaded() == {"m": "b1"}
    assert manager.failure("m", "b1") is None


def test_backoff_doubles_per_failure_of_one_build_up_to_its_cap():
    policy = RetryPolicy(first_seconds=5, max_seconds=12)
    first = policy.after(None, "b1")
    from explaind.server.serving.manager import LoadFailure
    second = policy.after(LoadFailure("b1", "x", 0.0, first), "b1")
    third = policy.after(LoadFailure("b1", "x", 0.0, second), "b1")
    assert (first, second, third) == (5, 10, 12)
    assert policy.after(LoadFailure("b0", "x", 0.0, 10), "b1") == 5      # a new build starts afresh


def test_a_store_outage_backs_off_briefly_and_a_broken_model_long():
    from explaind.server.serving.manager import LoadFailure
    policy = RetryPolicy()
    waits, previous = [], None
    for _ in range(8):                      # the store unreachable for minutes
        wait = policy.after(previous, "b1", transient=True)
        waits.append(wait)
        previous = LoadFailure("b1", "x", 0.0, wait, transient=True)
    assert waits[0] == policy.transient_first_seconds < policy.first_seconds
    assert max(waits) == policy.transient_max_seconds      # served within 30 s of the store's return
    assert policy.after(LoadFailure("b1", "x", 0.0, 160.0), "b1") == policy.max_seconds


def test_a_load_failed_by_the_store_is_recorded_as_transient(tmp_path):
    from explaind.server.store.retry import StoreUnavailable
    models = _publish(tmp_path)
    loader = FlakyLoader(models, str(tmp_path / "cache"), 1, StoreUnavailable("the store is unreachable"))
    manager = ModelManager(loader)
    manager.set_aspired(models.published_builds())
    failure = manager.failure("m", "b1")
    assert failure.transient and failure.backoff == RetryPolicy().transient_first_seconds


def test_a_model_that_fails_to_load_answers_unavailable_without_reloading_on_every_call(tmp_path):
    models = _publish(tmp_path)
    loader = FlakyLoader(models, str(tmp_path / "cache"), 99, OSError("index.faiss is truncated"))
    manager = ModelManager(loader)

    async def call():
        async with manager.serving("m"):
            pass

    for _ in range(3):
        with pytest.raises(Unavailable) as err:
            asyncio.run(call())
        assert "index.faiss is truncated" in str(err.value) and "another replica" in str(err.value)
    assert loader.attempts == 1                   # the later calls wait for the backoff


def test_a_servable_in_use_closes_only_when_its_last_handle_is_released(tmp_path):
    models = _publish(tmp_path)
    manager = ModelManager(BuildLoader(models, str(tmp_path / "cache"), use_gpu=False))
    closed = []

    async def scenario():
        async with manager.serving("m") as servable:
            servable.close = lambda: closed.append(servable.build_id)
            _publish(tmp_path, build_id="b2")              # a new version is published
            manager.set_aspired(models.published_builds())
            assert manager.loaded() == {"m": "b2"}
            assert closed == []                          # the call in flight keeps b1
            assert servable.index.size == 500
        assert closed == ["b1"]
        async with manager.serving("m") as servable:
            assert servable.build_id == "b2"

    asyncio.run(scenario())


def test_unpublished_models_are_unloaded_and_their_failures_forgotten(tmp_path):
    models = _publish(tmp_path)
    manager = ModelManager(BuildLoader(models, str(tmp_path / "cache"), use_gpu=False))
    manager.set_aspired(models.published_builds())
    assert manager.loaded() == {"m": "b1"}
    models.delete("m")
    manager.set_aspired(models.published_builds())
    assert manager.loaded() == {} and manager.peek("m") is None


def test_a_newer_build_loaded_leaves_only_itself_in_the_cache(tmp_path):
    models = _publish(tmp_path, build_id="b1")
    cache = str(tmp_path / "cache")
    loader = BuildLoader(models, cache, use_gpu=False)
    old = loader.load(models.get_published("m"))
    _publish(tmp_path, build_id="b2")
    new = loader.load(models.get_published("m"))
    assert os.listdir(os.path.join(cache, "m")) == ["b2"]
    q = np.ones((1, 8), np.float32)
    assert old.index.search(q, 3) == new.index.search(q, 3)       # the old version still answers
