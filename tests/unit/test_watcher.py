"""Loading published builds: processes sharing a cache, and retries after a failed load."""
import os
import threading
import time

import numpy as np

from explaind.server.index import ExampleIndex, SearchConfig
from explaind.server.runtime import served_model
from explaind.server.runtime.registry import ModelRegistry
from explaind.server.store import watcher as watcher_module
from explaind.server.store.models import ModelRecord, ModelStore
from explaind.server.store.objects import ObjectStore
from explaind.server.store.watcher import StoreWatcher
from explaind.v1 import model_pb2


def _publish(tmp_path, model_id="m", build_id="b1") -> ModelStore:
    models = ModelStore(ObjectStore(str(tmp_path / "store")))
    vectors = np.random.default_rng(0).normal(size=(500, 8)).astype(np.float32)
    index = ExampleIndex.build(vectors, [str(i) for i in range(500)], None, None,
                               SearchConfig(dimensions=8, distance="DOT_PRODUCT_DISTANCE", feature_norm="NONE",
                                            algorithm="brute_force"))
    folder = tmp_path / "built"
    folder.mkdir()
    index.save(str(folder))
    models.objects.upload_dir(str(folder), models.build_prefix(model_id, build_id))
    record = ModelRecord(model=model_pb2.Model(name=f"models/{model_id}", state=model_pb2.Model.READY),
                         build_id=build_id)
    models.claim(record)
    models.publish(record)
    return models


def test_processes_sharing_a_cache_each_end_with_the_whole_build(tmp_path):
    models = _publish(tmp_path)
    record = models.get_published("m")
    cache = str(tmp_path / "cache")
    loaded, errors = [], []

    def load():
        try:
            loaded.append(served_model.ServedModel.load(record, models, cache, use_gpu=False))
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


def test_a_failed_load_is_retried_after_a_backoff_not_given_up(tmp_path, monkeypatch):
    models = _publish(tmp_path)
    monkeypatch.setattr(watcher_module, "FIRST_RETRY_SECONDS", 0.3)
    real_load = served_model.ServedModel.load
    attempts = []

    def flaky(*args, **kwargs):
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            raise OSError("store unreachable")
        return real_load(*args, **kwargs)

    monkeypatch.setattr(watcher_module.ServedModel, "load", flaky)
    registry = ModelRegistry()
    watcher = StoreWatcher(models, registry, str(tmp_path / "cache"), False, 0.05)
    watcher.sync()                       # fails, and does not raise out of the poll
    watcher.sync()                       # within the backoff: not tried again
    assert len(attempts) == 1 and registry.loaded() == {}
    time.sleep(0.35)
    watcher.sync()
    assert len(attempts) == 2 and registry.loaded() == {"m": "b1"}
    assert "m" not in watcher.failed


def test_a_model_that_fails_to_load_answers_unavailable_without_reloading_on_every_call(tmp_path, monkeypatch):
    import asyncio

    import pytest

    from explaind.server.api.prediction import ModelAccess
    from explaind.server.errors import Unavailable

    models = _publish(tmp_path)
    attempts = []

    def broken(*args, **kwargs):
        attempts.append(1)
        raise OSError("index.faiss is truncated")

    monkeypatch.setattr(watcher_module.ServedModel, "load", broken)
    registry = ModelRegistry()
    access = ModelAccess(registry, StoreWatcher(models, registry, str(tmp_path / "cache"), False, 1.0), models)
    for _ in range(3):
        with pytest.raises(Unavailable) as err:
            asyncio.run(access.ensure_loaded("m"))
        assert "index.faiss is truncated" in str(err.value) and "another replica" in str(err.value)
    assert len(attempts) == 1                   # the later calls wait for the backoff
