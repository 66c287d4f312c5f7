"""An example-based Explain of model inputs runs the SavedModel once per batch: the run that
embeds the instances also answers the model's outputs (ExplainResponse.predictions)."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest
from google.protobuf import json_format, struct_pb2

from explaind.server.config import Settings
from explaind.server.index import ExampleIndex, SearchConfig
from explaind.server.metrics import Metrics
from explaind.server.serving.data_plane import DataPlane
from explaind.server.serving.engine import Engine
from explaind.server.serving.loader import BuildLoader
from explaind.server.serving.manager import ModelManager
from explaind.server.serving.requests import Limits
from explaind.server.store.models import ModelRecord, ModelStore
from explaind.server.store.objects import ObjectStore
from explaind.v1 import explanation_pb2, model_pb2
from tests import models, oracles

pytestmark = pytest.mark.slow

N, K = 300, 5


def _publish(tmp_path, artifact: str, latent: str, vectors: np.ndarray) -> ModelStore:
    store = ModelStore(ObjectStore(str(tmp_path / "store")))
    config = SearchConfig(dimensions=vectors.shape[1], distance="SQUARED_L2_DISTANCE", feature_norm="NONE",
                          algorithm="brute_force")
    (tmp_path / "built").mkdir()
    ExampleIndex.build(vectors, [f"e{i}" for i in range(len(vectors))], None, None, config).save(
        str(tmp_path / "built"))
    store.upload_build("m", "b1", str(tmp_path / "built"))
    spec = explanation_pb2.ExplanationSpec()
    spec.parameters.examples.neighbor_count = K
    spec.metadata.latent_space_source = latent
    record = ModelRecord(model=model_pb2.Model(name="models/m", state=model_pb2.Model.READY, explanation_spec=spec,
                                               artifact_uri=artifact), build_id="b1")
    store.claim(record)
    store.publish(record)
    return store


def _plane(tmp_path, store: ModelStore, metrics: Metrics) -> tuple[DataPlane, Engine]:
    # A long queue delay: concurrent calls share a batch whatever the machine's load.
    engine = Engine(Settings(search_threads=1, max_queue_delay_ms=200, max_batch_size=64), metrics=metrics)
    manager = ModelManager(BuildLoader(store, str(tmp_path / "cache"), use_gpu=False))
    return DataPlane(manager, engine, Limits(max_neighbor_count=50)), engine


def _instances(x: np.ndarray) -> list[struct_pb2.Value]:
    return [json_format.ParseDict({"features": row.tolist()}, struct_pb2.Value()) for row in x]


def _count(metrics: Metrics, name: str) -> float:
    return metrics.registry.get_sample_value(f"{name}_count", {"model": "m"}) or 0.0


def test_the_model_runs_once_per_batch_and_answers_both(tmp_path):
    path = models.counting_model(str(tmp_path / "model"))
    examples = models.counting_oracle(path, models.random_inputs(N, (4,), seed=1))
    metrics = Metrics(gpu_memory=False)
    plane, engine = _plane(tmp_path, _publish(tmp_path, path, "embedding", examples), metrics)
    queries = models.random_inputs(12, (4,), seed=2)

    async def explain_all():
        # One call alone (loads the model), then twelve at once (one batch or a few).
        first = await plane.explain("m", _instances(queries[:1]), explanation_pb2.ExplanationSpecOverride(), None)
        rest = await asyncio.gather(*(plane.explain("m", _instances(queries[i:i + 1]),
                                                    explanation_pb2.ExplanationSpecOverride(), None)
                                      for i in range(1, len(queries))))
        return [first[0]] + [answer[0] for answer in rest]

    try:
        answers = asyncio.run(explain_all())
        model_runs = _count(metrics, "explaind_embedding_seconds")
        batches = _count(metrics, "explaind_batch_size")
    finally:
        asyncio.run(engine.close())

    latents = models.counting_oracle(path, queries)
    nearest, _ = oracles.nearest(examples, latents, K, "SQUARED_L2_DISTANCE")
    predictions = [json_format.MessageToDict(answer.prediction) for answer in answers]
    for answer, expected, prediction, latent in zip(answers, nearest, predictions, latents):
        assert [n.neighbor_id for n in answer.neighbors] == [f"e{i}" for i in expected]
        np.testing.assert_allclose(prediction["embedding"], latent, rtol=1e-5, atol=1e-6)
    runs = [prediction["runs"] for prediction in predictions]
    # The model's own count of its runs: the warm-up at load, then one per batch of rows (none for a
    # separate Predict: with one, the counts would go up by two).
    assert runs[0] == 2 and 2 <= model_runs < len(queries)
    assert sorted(set(runs)) == list(range(2, int(model_runs) + 2))
    assert batches == 2 * model_runs            # each batch of rows: one model run, one search
