"""A batch job's array path (batch/arrays.py) against the path it shortcuts as the
oracle: the same rows answered by the data plane's Explain (or Predict), whose
lines are the online REST Explain answers. Every line must carry the same keys,
in the same order, and the same numbers to float32 precision; rows that fail must
fail alike. Where the array path does not apply, the job must choose the data
plane."""
from __future__ import annotations

import json

import numpy as np
import pytest
from google.protobuf import json_format

from explaind.server.attributions.explainer import AttributionArrays
from explaind.server.batch.arrays import attribution_dicts, neighbor_dicts
from explaind.server.batch.explainer import RowExplainer
from explaind.server.batch.instances import InstanceShape
from explaind.server.batch.rows import Row, RowError
from explaind.server.batch.task import BatchOptions, BatchTask
from explaind.server.index import ExampleIndex, SearchConfig
from explaind.server.index.restricts import Namespace
from explaind.server.store.models import ModelRecord, ModelStore
from explaind.server.store.objects import ObjectStore
from explaind.v1 import explanation_pb2, model_pb2
from tests import attr_models, models
from tests.oracles import assert_json_close

pytestmark = pytest.mark.slow

ROWS = np.random.default_rng(5).normal(size=(40, 6)).round(4)
MLP_METADATA = {"inputs": {"features": {"inputTensorName": "features"}},
                "outputs": {"scores": {"outputTensorName": "output_0",
                                       "indexDisplayNameMapping": ["cat", "dog", "emu"]}}}


def _store(tmp_path) -> ModelStore:
    return ModelStore(ObjectStore(str(tmp_path / "store")))


def _publish(store: ModelStore, model_id: str, artifact: str, spec: dict, build_id: str = "") -> None:
    record = ModelRecord(model=model_pb2.Model(
        name=f"models/{model_id}", state=model_pb2.Model.READY, artifact_uri=artifact,
        explanation_spec=json_format.ParseDict(spec, explanation_pb2.ExplanationSpec())), build_id=build_id)
    store.claim(record)
    store.publish(record)


def _attribution_model(store: ModelStore, model_id: str, parameters: dict, metadata: dict = MLP_METADATA,
                       artifact: str | None = None) -> None:
    _publish(store, model_id, artifact or attr_models.mlp_model(), {"parameters": parameters, "metadata": metadata})


def _examples_model(tmp_path, store: ModelStore, model_id: str = "pets") -> None:
    """tests.models' tabular model (8 features, latent "embedding" of 16) over 300 examples, with
    restricts (a colour each) and crowding tags (five kinds)."""
    artifact = models.tabular_embedding_model(str(tmp_path / "tabular"))
    vectors = models.keras_layer_latent(artifact, "embedding", models.random_inputs(300, (8,), seed=1))
    colours = ["red", "green", "blue"]
    config = SearchConfig(dimensions=vectors.shape[1], distance="SQUARED_L2_DISTANCE", feature_norm="NONE",
                          algorithm="brute_force")
    index = ExampleIndex.build(np.asarray(vectors, np.float32), [f"e{i}" for i in range(len(vectors))],
                               [[Namespace("colour", [colours[i % 3]], [])] for i in range(len(vectors))],
                               [f"kind{i % 5}" for i in range(len(vectors))], config)
    (tmp_path / "built").mkdir()
    index.save(str(tmp_path / "built"))
    store.upload_build(model_id, "b1", str(tmp_path / "built"))
    _publish(store, model_id, artifact, {"parameters": {"examples": {"neighborCount": 4}},
                                         "metadata": {"latentSpaceSource": "embedding"}}, build_id="b1")


def _explainer(tmp_path, store: ModelStore, model_id: str, override: dict | None = None,
               explained: bool = True) -> RowExplainer:
    override_message = json_format.ParseDict(override or {}, explanation_pb2.ExplanationSpecOverride())
    task = BatchTask(operation="op", record=store.get_published(model_id).to_bytes(), store_uri=store.uri, paths=(),
                     instances_format="jsonl", shape=InstanceShape(), override=override_message.SerializeToString(),
                     explained=explained, staging=str(tmp_path / "staging"), options=BatchOptions(batch_size=64))
    explainer = RowExplainer(task)
    explainer.load()
    return explainer


def _prepared(instances: list) -> list:
    return [InstanceShape().prepare(Row(i, value, f"line {i + 1}")) for i, value in enumerate(instances)]


def _both_paths(explainer: RowExplainer, instances: list) -> tuple[list, list]:
    """(the array path's answers, the data plane's) for the same rows."""
    assert explainer.arrays is not None, "the job should take the array path"
    rows = _prepared(instances)
    by_arrays = explainer.answer(rows)
    arrays, explainer.arrays = explainer.arrays, None
    try:
        by_plane = explainer.answer(rows)
    finally:
        explainer.arrays = arrays
    return by_arrays, by_plane


def _assert_same_answers(by_arrays: list, by_plane: list) -> None:
    assert len(by_arrays) == len(by_plane)
    for got, want in zip(by_arrays, by_plane):
        if isinstance(want, RowError):
            assert got == want
        else:
            assert isinstance(got, bytes)
            # the same JSON: keys in the same order, numbers to float32 precision, the rest equal
            assert_json_close(json.loads(got), json.loads(want), rel=1e-6, abs_tol=1e-9, exact_layout=True)


def _instances(rows=ROWS) -> list:
    return [{"features": row.tolist()} for row in rows]


@pytest.mark.parametrize("parameters, override", [
    ({"integratedGradientsAttribution": {"stepCount": 50}}, None),
    ({"integratedGradientsAttribution": {"stepCount": 20}, "topK": -1}, None),
    ({"integratedGradientsAttribution": {"stepCount": 20}, "outputIndices": [2, 0]}, None),
    ({"integratedGradientsAttribution": {"stepCount": 20}}, {"parameters": {"topK": 2, "integratedGradientsAttribution":
                                                                            {"stepCount": 30}}}),
    ({"integratedGradientsAttribution": {"stepCount": 10, "smoothGradConfig": {"noiseSigma": 0.2,
                                                                               "noisySampleCount": 4}}}, None),
])
def test_integrated_gradients_lines_are_the_explain_answers(tmp_path, parameters, override):
    store = _store(tmp_path)
    _attribution_model(store, "mlp", parameters)
    explainer = _explainer(tmp_path, store, "mlp", override)
    try:
        by_arrays, by_plane = _both_paths(explainer, _instances())
        _assert_same_answers(by_arrays, by_plane)
        first = json.loads(by_arrays[0])
        assert first["instance"] == {"features": ROWS[0].tolist()} and len(first["prediction"]) == 3
        assert first["explanation"]["attributions"][0]["outputName"] == "scores"
    finally:
        explainer.close()


def test_several_baselines_and_display_names_are_the_explain_answers(tmp_path):
    metadata = {"inputs": {"features": {"inputTensorName": "features",
                                        "inputBaselines": [[0.0] * 6, [0.5, -0.5, 0.25, 0.0, 1.0, -1.0]]}},
                "outputs": MLP_METADATA["outputs"]}
    store = _store(tmp_path)
    _attribution_model(store, "mlp", {"integratedGradientsAttribution": {"stepCount": 25}, "topK": 3}, metadata)
    explainer = _explainer(tmp_path, store, "mlp")
    try:
        by_arrays, by_plane = _both_paths(explainer, _instances())
        _assert_same_answers(by_arrays, by_plane)
        names = [a.get("outputDisplayName") for a in json.loads(by_arrays[0])["explanation"]["attributions"]]
        assert sorted(names) == ["cat", "dog", "emu"]
    finally:
        explainer.close()


def test_several_features_and_an_unexplained_input_keep_the_explain_answers_keys(tmp_path):
    """The tabular model's bag of tags (INDICATOR: one key per name) and its size explained, its colour
    a model input left as it is: keys in the Explain answer's order."""
    path, _ = attr_models.tabular_model()
    metadata = {"inputs": {"tags": {"inputTensorName": "tags", "encoding": "INDICATOR",
                                    "indexFeatureMapping": list(attr_models.TAB_TAGS)},
                           "size": {"inputTensorName": "size"}},
                "outputs": {"price": {"outputTensorName": "price"}}}
    store = _store(tmp_path)
    _attribution_model(store, "tab", {"integratedGradientsAttribution": {"stepCount": 30}}, metadata, path)
    rng = np.random.default_rng(2)
    instances = [{"color": [int(rng.integers(4))], "tags": rng.integers(0, 2, 5).astype(float).tolist(),
                  "size": [round(float(rng.normal()), 3)]} for _ in range(12)]
    explainer = _explainer(tmp_path, store, "tab")
    try:
        by_arrays, by_plane = _both_paths(explainer, instances)
        _assert_same_answers(by_arrays, by_plane)
        features = json.loads(by_arrays[0])["explanation"]["attributions"][0]["featureAttributions"]
        assert set(features) == {*attr_models.TAB_TAGS, "size"}
    finally:
        explainer.close()


def test_rows_that_fail_fail_alike_and_the_others_are_answered(tmp_path):
    store = _store(tmp_path)
    _attribution_model(store, "mlp", {"integratedGradientsAttribution": {"stepCount": 10}})
    instances = _instances(ROWS[:10])
    instances[2] = {"features": [1.0, 2.0]}                 # wrong shape
    instances[5] = {"features": ["a", "b", "c", "d", "e", "f"]}   # not numbers
    instances[7] = {"other": [1.0] * 6}                    # not the model's input
    instances[8] = [1.0] * 6                               # a bare value: the one input's
    explainer = _explainer(tmp_path, store, "mlp")
    try:
        by_arrays, by_plane = _both_paths(explainer, instances)
        _assert_same_answers(by_arrays, by_plane)
        failed = [i for i, answer in enumerate(by_arrays) if isinstance(answer, RowError)]
        assert failed == [2, 5, 7]
        assert all(by_arrays[i].code.name == "INVALID_ARGUMENT" for i in failed)
    finally:
        explainer.close()


@pytest.mark.parametrize("override", [
    None,
    {"examplesOverride": {"neighborCount": 7}},
    {"examplesOverride": {"neighborCount": 5, "crowdingCount": 1}},
    {"examplesOverride": {"neighborCount": 3, "restrictions": [{"namespaceName": "colour", "allow": ["red", "blue"]}]}},
])
def test_neighbor_lines_are_the_explain_answers(tmp_path, override):
    store = _store(tmp_path)
    _examples_model(tmp_path, store)
    queries = models.random_inputs(30, (8,), seed=3)
    instances = [{"features": row.round(4).tolist()} for row in queries]
    explainer = _explainer(tmp_path, store, "pets", override)
    try:
        by_arrays, by_plane = _both_paths(explainer, instances)
        _assert_same_answers(by_arrays, by_plane)
        neighbors = json.loads(by_arrays[0])["explanation"]["neighbors"]
        assert len(neighbors) == ((override or {}).get("examplesOverride", {}).get("neighborCount") or 4)
    finally:
        explainer.close()


def test_rows_with_their_own_restricts_and_failing_rows_match_the_explain_answers(tmp_path):
    store = _store(tmp_path)
    _examples_model(tmp_path, store)
    queries = models.random_inputs(12, (8,), seed=4)
    instances = [{"features": row.round(4).tolist(),
                  "restricts": [{"namespace": "colour", "allow": [["red", "green", "blue"][i % 3]]}]}
                 for i, row in enumerate(queries)]
    instances[3] = {"features": [1.0, 2.0]}
    instances[6]["restricts"] = [{"namespace": "", "allow": ["red"]}]      # no namespace name
    explainer = _explainer(tmp_path, store, "pets")
    try:
        by_arrays, by_plane = _both_paths(explainer, instances)
        _assert_same_answers(by_arrays, by_plane)
        assert [i for i, answer in enumerate(by_arrays) if isinstance(answer, RowError)] == [3, 6]
        assert "restricts" in by_arrays[6].message
    finally:
        explainer.close()


@pytest.mark.parametrize("kind", ["attributions", "examples"])
def test_prediction_only_lines_are_the_predict_answers(tmp_path, kind):
    store = _store(tmp_path)
    if kind == "attributions":
        _attribution_model(store, "m", {"integratedGradientsAttribution": {"stepCount": 10}})
        instances = _instances(ROWS[:20])
    else:
        _examples_model(tmp_path, store, "m")
        instances = [{"features": row.round(4).tolist()} for row in models.random_inputs(20, (8,), seed=5)]
    instances[4] = {"features": [0.0]}
    explainer = _explainer(tmp_path, store, "m", explained=False)
    try:
        by_arrays, by_plane = _both_paths(explainer, instances)
        _assert_same_answers(by_arrays, by_plane)
        assert isinstance(by_arrays[4], RowError)
        assert list(json.loads(by_arrays[0])) == ["instance", "prediction"]
    finally:
        explainer.close()


@pytest.mark.parametrize("parameters, metadata, override", [
    ({"sampledShapleyAttribution": {"pathCount": 4}}, MLP_METADATA, None),
    ({"integratedGradientsAttribution": {"stepCount": 10, "blurBaselineConfig": {"maxBlurSigma": 2.0}}},
     MLP_METADATA, None),
    ({"integratedGradientsAttribution": {"stepCount": 10}}, MLP_METADATA,
     {"parameters": {"sampledShapleyAttribution": {"pathCount": 3}}}),     # refused: the data plane words it
])
def test_attributions_the_arrays_do_not_cover_take_the_data_plane(tmp_path, parameters, metadata, override):
    store = _store(tmp_path)
    _attribution_model(store, "mlp", parameters, metadata)
    explainer = _explainer(tmp_path, store, "mlp", override)
    try:
        assert explainer.arrays is None
        answers = explainer.answer(_prepared(_instances(ROWS[:3])))
        assert len(answers) == 3
        if override is None:
            assert all(isinstance(a, bytes) and "attributions" in json.loads(a)["explanation"] for a in answers)
        else:
            assert all(isinstance(a, RowError) and a.code.name == "INVALID_ARGUMENT" for a in answers)
    finally:
        explainer.close()


def test_encoded_inputs_take_the_data_plane(tmp_path):
    path, _ = attr_models.tabular_model()
    metadata = {"inputs": {
        "color": {"inputTensorName": "color", "encodedTensorName": "color_onehot", "modality": "categorical"},
        "size": {"inputTensorName": "size"}}, "outputs": {"price": {"outputTensorName": "price"}}}
    store = _store(tmp_path)
    _attribution_model(store, "tab", {"integratedGradientsAttribution": {"stepCount": 10}}, metadata, path)
    explainer = _explainer(tmp_path, store, "tab")
    try:
        assert explainer.arrays is None
    finally:
        explainer.close()


@pytest.mark.parametrize("override", [{"examplesOverride": {"returnEmbeddings": True}},
                                      {"examplesOverride": {"dataFormat": "EMBEDDINGS"}}])
def test_neighbor_jobs_the_arrays_do_not_cover_take_the_data_plane(tmp_path, override):
    store = _store(tmp_path)
    _examples_model(tmp_path, store)
    explainer = _explainer(tmp_path, store, "pets", override)
    try:
        assert explainer.arrays is None
    finally:
        explainer.close()


def test_a_batch_with_numbers_json_has_not_is_left_to_the_data_plane():
    finite = AttributionArrays({"x": np.ones((2, 1, 3))}, np.ones((2, 1)), np.zeros((2, 1)), np.zeros((2, 1), np.int64),
                               (3,), np.zeros((2, 1)), "y", ("a", "b", "c"), {})
    assert attribution_dicts(finite) is not None
    for broken in ({"features": {"x": np.array([[[1.0, np.nan, 0.0]], [[1.0, 1.0, 1.0]]])}},
                   {"instance_values": np.array([[1.0], [np.inf]])}):
        arrays = AttributionArrays(**(vars(finite) | broken))
        assert attribution_dicts(arrays) is None
    ids = lambda positions: [f"e{p}" for p in positions]          # noqa: E731
    positions = np.array([[0, 1, -1]])
    assert neighbor_dicts(ids, positions, np.array([[0.0, 2.5, np.inf]], np.float32)) == [
        {"neighbors": [{"neighborId": "e0"}, {"neighborId": "e1", "neighborDistance": 2.5}]}]    # 0.0: proto3 omits it
    assert neighbor_dicts(ids, positions, np.array([[np.nan, 2.5, np.inf]], np.float32)) is None
