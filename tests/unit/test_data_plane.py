"""The data plane without any API surface: what every servicer gets for its
parts (a model id, Value instances, an explaind.v1 override)."""
import asyncio

import numpy as np
import pytest
from google.protobuf import json_format, struct_pb2

from explaind.server.config import Settings
from explaind.server.errors import FailedPrecondition, InvalidArgument, NotFound
from explaind.server.index import ExampleIndex, SearchConfig
from explaind.server.serving.data_plane import DataPlane
from explaind.server.serving.engine import Engine
from explaind.server.serving.loader import BuildLoader
from explaind.server.serving.manager import ModelManager
from explaind.server.serving.requests import Limits
from explaind.server.store.models import ModelRecord, ModelStore
from explaind.server.store.objects import ObjectStore
from explaind.v1 import explanation_pb2, model_pb2
from tests import oracles

N, D = 400, 6


@pytest.fixture
def plane(tmp_path):
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(N, D)).astype(np.float32)
    tags = [f"t{i % 4}" for i in range(N)]
    models = ModelStore(ObjectStore(str(tmp_path / "store")))
    config = SearchConfig(dimensions=D, distance="SQUARED_L2_DISTANCE", feature_norm="NONE", algorithm="brute_force")
    index = ExampleIndex.build(vectors, [f"e{i}" for i in range(N)], None, tags, config)
    (tmp_path / "built").mkdir()
    index.save(str(tmp_path / "built"))
    models.upload_build("m", "b1", str(tmp_path / "built"))
    spec = explanation_pb2.ExplanationSpec()
    spec.parameters.examples.neighbor_count = 7
    record = ModelRecord(model=model_pb2.Model(name="models/m", state=model_pb2.Model.READY, explanation_spec=spec),
                         build_id="b1")
    models.claim(record)
    models.publish(record)
    engine = Engine(Settings(search_threads=1))
    yield DataPlane(ModelManager(BuildLoader(models, str(tmp_path / "cache"), use_gpu=False)), engine,
                    Limits(max_neighbor_count=50)), vectors, tags
    asyncio.run(engine.close())


def _override(**examples) -> explanation_pb2.ExplanationSpecOverride:
    return json_format.ParseDict({"examplesOverride": {"dataFormat": "EMBEDDINGS", **examples}},
                                 explanation_pb2.ExplanationSpecOverride())


def _values(*rows) -> list[struct_pb2.Value]:
    return [json_format.ParseDict(r, struct_pb2.Value()) for r in rows]


def test_explain_answers_the_oracle_with_the_models_default_count(plane):
    plane, vectors, _ = plane
    query = np.full(D, 0.3)
    got = asyncio.run(plane.explain("m", _values(query.tolist(), {"embedding": query.tolist(), "id": "q"}),
                                    _override(), None))
    order, dist = oracles.nearest(vectors, query[None], 7, "SQUARED_L2_DISTANCE")
    for explanation, label in zip(got, ["0", "q"]):
        assert explanation.input == label
        assert [n.neighbor_id for n in explanation.neighbors] == [f"e{p}" for p in order[0]]
        np.testing.assert_allclose([n.distance for n in explanation.neighbors], dist[0], rtol=1e-4)


def test_crowding_and_embeddings_travel_in_the_override(plane):
    plane, vectors, tags = plane
    query = vectors[5]
    [got] = asyncio.run(plane.explain("m", _values(query.tolist()),
                                      _override(neighborCount=8, crowdingCount=1, returnEmbeddings=True), None))
    dist = oracles.distances(query, vectors, "SQUARED_L2_DISTANCE")[0]
    want = oracles.crowded_search(dist, np.ones(N, bool), tags, 8, 1)
    assert [n.neighbor_id for n in got.neighbors] == [f"e{p}" for p in want]      # 4 tags: 4 neighbors
    np.testing.assert_array_equal(got.neighbors[0].embedding, vectors[want[0]])
    np.testing.assert_array_equal(got.embedding, query)


def test_bad_parts_name_their_fields(plane):
    plane, _, _ = plane
    with pytest.raises(InvalidArgument) as e:
        asyncio.run(plane.explain("m", _values([0.0] * D), _override(neighborCount=51), None))
    assert e.value.field == "explanation_spec_override.examples_override.neighbor_count"
    with pytest.raises(InvalidArgument) as e:
        asyncio.run(plane.explain("m", _values([0.0] * (D + 1)), _override(), None))
    assert e.value.field == "instances[0]"
    attribution = explanation_pb2.ExplanationSpecOverride()
    attribution.parameters.top_k = 2
    with pytest.raises(InvalidArgument) as e:
        asyncio.run(plane.explain("m", _values([0.0] * D), attribution, None))
    assert e.value.field == "explanation_spec_override.parameters"
    with pytest.raises(InvalidArgument) as e:        # an index-only model takes embeddings only
        asyncio.run(plane.explain("m", _values({"x": 1.0}), explanation_pb2.ExplanationSpecOverride(), None))
    assert e.value.field == "instances[0]"
    with pytest.raises(FailedPrecondition):          # ... and has nothing to predict with
        asyncio.run(plane.predict("m", _values([0.0] * D), None))
    with pytest.raises(FailedPrecondition) as e:     # ... nor to embed with: the same refusal
        asyncio.run(plane.explain("m", _values([0.0] * D), explanation_pb2.ExplanationSpecOverride(), None))
    assert e.value.field == "explanation_spec_override.examples_override.data_format"
    assert "index-only" in e.value.message
    with pytest.raises(NotFound):
        asyncio.run(plane.explain("nope", _values([0.0] * D), _override(), None))
