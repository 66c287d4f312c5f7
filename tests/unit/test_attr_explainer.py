"""FeatureExplainer's rules over a numpy model (no TensorFlow): Vertex's output order, SmoothGrad's
noise (per feature, none for unlisted ones, sigma in the input's units), groups, bag names, exact
and sampled Shapley with their standard errors, and the refusals that name metadata fields."""
import numpy as np
import pytest
from google.protobuf import json_format

from explaind.server.attributions.explainer import FeatureExplainer
from explaind.server.attributions.layout import build_layout
from explaind.server.attributions.metadata import check_metadata, parse_metadata
from explaind.server.attributions.tf_model import TensorInfo
from explaind.server.errors import InvalidArgument
from explaind.v1 import explanation_pb2 as pb
from tests import oracles

WEIGHTS = np.array([[1.0, -2.0, 0.5], [0.5, 1.0, -1.0], [2.0, 0.0, 1.0], [-1.0, 1.5, 0.25], [0.3, 0.3, 0.3]])


class PolynomialModel:
    """y = tanh-free cubic of 'a' (3 values) and 'b' (2 values), 3 outputs, with an a*b interaction.
    Exact gradients; records every row it is asked the gradient of."""

    inputs = model_inputs = {"a": TensorInfo((3,), np.dtype(np.float32), True),
                             "b": TensorInfo((2,), np.dtype(np.float32), True)}
    outputs = {"y": (3,)}
    output_name = ""
    preprocesses = False

    def __init__(self):
        self.gradient_rows = []

    def resolve(self, name):
        if name.split(":")[0] in self.model_inputs:
            return name.split(":")[0]
        raise LookupError(f"{name!r} is not a tensor of this model")

    def tensor_info(self, name):
        return self.model_inputs[name]

    def is_graph_tensor(self, name):
        return False

    def bind(self, fed, fetched):
        assert not fed and not fetched

    def preprocess(self, inputs):
        return dict(inputs)

    def values(self, inputs, names, replaced=None):
        return {name: np.asarray(({**inputs, **(replaced or {})})[name]) for name in names}

    def _features(self, inputs):
        a, b = np.asarray(inputs["a"], np.float64), np.asarray(inputs["b"], np.float64)
        return np.concatenate([a ** 3, b, (a[:, :1] * b[:, :1])], axis=1)      # (n, 6): last = interaction

    def predict(self, inputs):
        features = self._features(inputs)
        return features[:, :5] @ WEIGHTS + features[:, 5:] * np.array([1.0, -1.0, 2.0])

    def predict_all(self, inputs):
        return {"y": self.predict(inputs).astype(np.float32)}

    def gradients(self, inputs, index):
        self.gradient_rows.append({k: np.array(v) for k, v in inputs.items()})
        a, b = np.asarray(inputs["a"], np.float64), np.asarray(inputs["b"], np.float64)
        inter = np.array([1.0, -1.0, 2.0])[index]
        ga = 3 * a ** 2 * WEIGHTS[:3, index].T
        ga[:, 0] += inter * b[:, 0]
        gb = WEIGHTS[3:, index].T.copy()
        gb[:, 0] += inter * a[:, 0]
        return {"a": ga, "b": gb}


def _explainer(parameters, metadata=None, model=None):
    spec = pb.ExplanationSpec(parameters=json_format.ParseDict(parameters, pb.ExplanationParameters()))
    if metadata is not None:
        spec.metadata.CopyFrom(json_format.ParseDict(metadata, pb.ExplanationMetadata()))
    return FeatureExplainer(model or PolynomialModel(), spec, spec.metadata)


X = {"a": np.array([[0.5, -1.0, 0.8]], np.float32), "b": np.array([[1.0, 2.0]], np.float32)}
TWO_INPUTS = {"inputs": {"a": {"inputTensorName": "a"}, "b": {"inputTensorName": "b"}}}


def _features(attribution, field="feature_attributions"):
    return json_format.MessageToDict(getattr(attribution, field))


def test_output_indices_answer_in_the_order_asked_and_top_k_by_value():
    explainer = _explainer({"integratedGradientsAttribution": {"stepCount": 10}, "outputIndices": [2, 0]})
    assert [a.output_index[0] for a in explainer.explain(X)[0]] == [2, 0]
    scores = PolynomialModel().predict(X)[0]
    top = _explainer({"integratedGradientsAttribution": {"stepCount": 10}, "topK": 2}).explain(X)[0]
    assert [a.output_index[0] for a in top] == list(np.argsort(-scores)[:2])
    (argmax,) = _explainer({"integratedGradientsAttribution": {"stepCount": 10}}).explain(X)[0]
    assert argmax.output_index[0] == int(np.argmax(scores))


def test_smoothgrad_noise_goes_on_the_listed_features_only_in_their_units():
    """Vertex: noise on the interpolated inputs, sigma in the feature's own units (a value domain
    does not scale it), none on a feature feature_noise_sigma does not list."""
    model = PolynomialModel()
    metadata = {"inputs": {"a": {"inputTensorName": "a", "featureValueDomain": {"minValue": 0, "maxValue": 100}},
                           "b": {"inputTensorName": "b"}}}
    explainer = _explainer({"integratedGradientsAttribution": {"stepCount": 20, "smoothGradConfig": {
        "noisySampleCount": 40, "featureNoiseSigma": {"noiseSigma": [{"name": "a", "sigma": 0.3}]}}}}, metadata, model)
    explainer.explain(X)
    (rows,) = model.gradient_rows
    alphas, _ = np.polynomial.legendre.leggauss(20)
    path_b = (alphas[:, None] + 1) / 2 * X["b"][0][None]           # zero baseline: alpha * x
    np.testing.assert_allclose(rows["b"], np.tile(path_b, (40, 1)), rtol=1e-6, atol=1e-7)
    noise = rows["a"] - np.tile((alphas[:, None] + 1) / 2 * X["a"][0][None], (40, 1))
    assert noise.shape == (800, 3) and abs(noise.std() - 0.3) < 0.03 and abs(noise.mean()) < 0.03


def test_smoothgrad_one_sigma_perturbs_every_feature_and_zero_sigma_is_integrated_gradients():
    model = PolynomialModel()
    smooth = _explainer({"integratedGradientsAttribution": {"stepCount": 8, "smoothGradConfig": {
        "noisySampleCount": 3, "noiseSigma": 0.2}}}, TWO_INPUTS, model)
    smooth.explain(X)
    assert all(np.std(model.gradient_rows[0][name] - np.tile(model.gradient_rows[0][name][:8], (3, 1))) > 0.05
               for name in ("a", "b"))
    plain = _explainer({"integratedGradientsAttribution": {"stepCount": 8}}, TWO_INPUTS).explain(X)[0][0]
    zero = _explainer({"integratedGradientsAttribution": {"stepCount": 8, "smoothGradConfig": {
        "featureNoiseSigma": {"noiseSigma": [{"name": "a", "sigma": 0.0}]}}}}, TWO_INPUTS).explain(X)[0][0]
    for name in ("a", "b"):
        np.testing.assert_allclose(_features(zero)[name], _features(plain)[name], rtol=1e-12)


def test_groups_merge_their_members_for_gradients_and_switch_together_for_shapley():
    grouped = {"inputs": {"a": {"inputTensorName": "a", "groupName": "all"}, "b": {"inputTensorName": "b", "groupName": "all"}}}
    (ig,) = _explainer({"integratedGradientsAttribution": {"stepCount": 30}, "outputIndices": [1]}, grouped).explain(X)[0]
    (alone,) = _explainer({"integratedGradientsAttribution": {"stepCount": 30}, "outputIndices": [1]}, TWO_INPUTS).explain(X)[0]
    parts = _features(alone)
    assert list(_features(ig)) == ["all"]
    assert _features(ig)["all"] == pytest.approx(sum(np.sum(v) for v in parts.values()))
    (shapley,) = _explainer({"sampledShapleyAttribution": {"pathCount": 5}, "outputIndices": [1]}, grouped).explain(X)[0]
    gap = shapley.instance_output_value - shapley.baseline_output_value
    assert _features(shapley) == {"all": pytest.approx(gap)}             # one player takes the whole change
    assert shapley.shapley_computation == pb.Attribution.EXACT


def _coalition_value(model, x, baseline, players, index):
    """An oracle's value function: the players' elements at the instance's values."""
    flat_x = np.concatenate([x["a"][0], x["b"][0]])
    flat_b = np.concatenate([baseline["a"], baseline["b"]])

    def value(coalition):
        row = np.where(np.isin(players, list(coalition)), flat_x, flat_b)
        return model.predict({"a": row[None, :3], "b": row[None, 3:]})[0, index]
    return value


def test_exact_shapley_matches_enumeration_and_sampled_reports_its_standard_error():
    model = PolynomialModel()
    baseline = {"a": np.zeros(3), "b": np.zeros(2)}
    exact_values = oracles.shapley_by_enumeration(_coalition_value(model, X, baseline, np.arange(5), 0), 5)
    # 5 players: 2^5 = 32 rows <= 7 paths x 5 players: exact; 6 paths (30 rows) would not be.
    (exact,) = _explainer({"sampledShapleyAttribution": {"pathCount": 7}, "outputIndices": [0]}, TWO_INPUTS).explain(X)[0]
    assert exact.shapley_computation == pb.Attribution.EXACT and not exact.HasField("feature_attribution_errors")
    got = _features(exact)
    np.testing.assert_allclose(np.concatenate([got["a"], got["b"]]), exact_values, rtol=1e-9, atol=1e-12)
    (sampled,) = _explainer({"sampledShapleyAttribution": {"pathCount": 6}, "outputIndices": [0]},
                            TWO_INPUTS).explain(X)[0]
    assert sampled.shapley_computation == pb.Attribution.SAMPLED
    values, errors = _features(sampled), _features(sampled, "feature_attribution_errors")
    estimate = np.concatenate([values["a"], values["b"]])
    error = np.concatenate([errors["a"], errors["b"]])
    assert np.all(error >= 0) and np.any(error > 0)
    assert np.all(np.abs(estimate - exact_values) <= 4 * error + 1e-9)
    assert estimate.sum() == pytest.approx(exact_values.sum())          # every path adds up exactly


def test_bag_inputs_answer_per_name_and_check_their_length():
    metadata = {"inputs": {"a": {"inputTensorName": "a", "encoding": "BAG_OF_FEATURES",
                                 "indexFeatureMapping": ["x", "y", "z"]}, "b": {"inputTensorName": "b"}}}
    (attribution,) = _explainer({"integratedGradientsAttribution": {"stepCount": 40}, "outputIndices": [0]},
                                metadata).explain(X)[0]
    (plain,) = _explainer({"integratedGradientsAttribution": {"stepCount": 40}, "outputIndices": [0]},
                          TWO_INPUTS).explain(X)[0]
    got, want = _features(attribution), _features(plain)
    assert set(got) == {"x", "y", "z", "b"}
    assert [got["x"], got["y"], got["z"]] == pytest.approx(want["a"])
    metadata["inputs"]["a"]["indexFeatureMapping"] = ["x", "y"]
    with pytest.raises(InvalidArgument) as error:
        _explainer({"integratedGradientsAttribution": {}}, metadata)
    assert error.value.field == "model.explanation_spec.metadata.inputs[a].index_feature_mapping"


@pytest.mark.parametrize("metadata, parameters, field", [
    ({"inputs": {"a": {"inputTensorName": "nope"}}}, {}, "inputs[a].input_tensor_name"),
    ({"inputs": {"a": {"inputTensorName": "a", "encodedTensorName": "nope"}}}, {}, "inputs[a].encoded_tensor_name"),
    ({"inputs": {"a": {"inputTensorName": "a", "inputBaselines": [[1, 2]]}}}, {}, "inputs[a].input_baselines[0]"),
    ({"inputs": {"a": {"inputTensorName": "a"}, "b": {"inputTensorName": "a"}}}, {}, "inputs[b]"),
    (TWO_INPUTS, {"smoothGradConfig": {"featureNoiseSigma": {"noiseSigma": [{"name": "c", "sigma": 1}]}}},
     "parameters.integrated_gradients_attribution.smooth_grad_config.feature_noise_sigma.noise_sigma[0].name"),
])
def test_load_refusals_name_the_metadata_field(metadata, parameters, field):
    with pytest.raises(InvalidArgument) as error:
        _explainer({"integratedGradientsAttribution": parameters}, metadata)
    prefix = "model.explanation_spec." if field.startswith("parameters") else "model.explanation_spec.metadata."
    assert error.value.field == prefix + field


def test_override_noise_names_are_checked_at_explain_time():
    explainer = _explainer({"integratedGradientsAttribution": {"stepCount": 5}}, TWO_INPUTS)
    override = json_format.ParseDict({"parameters": {"integratedGradientsAttribution": {"smoothGradConfig": {
        "featureNoiseSigma": {"noiseSigma": [{"name": "zzz", "sigma": 1}]}}}}}, pb.ExplanationSpecOverride())
    with pytest.raises(InvalidArgument) as error:
        explainer.explain(X, override)
    assert error.value.field.startswith("explanation_spec_override.parameters.integrated_gradients_attribution")


@pytest.mark.parametrize("document, field", [
    ({"inputs": {"t": {"encoding": "CONCAT_EMBEDDING"}}}, "inputs[t].encoded_tensor_name"),
    ({"inputs": {"t": {"encoding": "COMBINED_EMBEDDING"}}}, "inputs[t].encoded_tensor_name"),
    ({"inputs": {"t": {"encodedBaselines": [0]}}}, "inputs[t].encoded_baselines"),
    ({"inputs": {"t": {"encodedTensorName": "e", "encodedBaselines": [0], "inputBaselines": [0]}}},
     "inputs[t].encoded_baselines"),
    ({"inputs": {"t": {"denseShapeTensorName": "s"}}}, "inputs[t].indices_tensor_name"),
    ({"inputs": {"t": {"encoding": "INDICATOR", "indexFeatureMapping": ["a", "a"]}}}, "inputs[t].index_feature_mapping[1]"),
    ({"inputs": {"t": {"encoding": "INDICATOR", "indexFeatureMapping": ["a", ""]}}}, "inputs[t].index_feature_mapping[1]"),
    ({"inputs": {"t": {"encoding": "INDICATOR", "indexFeatureMapping": ["u"]}, "u": {}}}, "inputs[u]"),
    ({"inputs": {"t": {"groupName": "u"}, "u": {}}}, "inputs[u]"),
    ({"inputs": {"t": {"encodedTensorName": "e" * 2000}}}, "inputs[t].encoded_tensor_name"),
    ({"inputs": {"t": {"encodedTensorName": "e", "encodedBaselines": [0] * 11}}}, "inputs[t].encoded_baselines"),
    ({"inputs": {"t": {"encoding": 99}}}, "inputs[t].encoding"),
])
def test_model_free_rules_name_the_field(document, field):
    metadata = json_format.ParseDict(document, pb.ExplanationMetadata())
    with pytest.raises(InvalidArgument) as error:
        check_metadata(metadata)
    assert error.value.field == f"model.explanation_spec.metadata.{field}"


def test_members_of_one_group_may_share_its_name():
    check_metadata(parse_metadata({"inputs": {"t": {"group_name": "g"}, "u": {"group_name": "g"}}}))


def test_layout_scatters_sparse_values_to_their_names():
    from explaind.server.attributions.explained_inputs import ExplainedInput

    bag = ExplainedInput("tags", "w", None, "BAG_OF_FEATURES_SPARSE", ("p", "q", "r"), "", "ids", "shape", "numeric",
                         False, None, "f")
    values = {"w": np.array([1.0, 2.0, 4.0]), "ids": np.array([[0, 2], [0, 2], [0, 0]]), "shape": np.array([1, 3])}
    layout = build_layout([bag], values, True)
    assert {k: float(v) for k, v in layout.as_dict(layout.features(np.array([1.0, 2.0, 4.0]))).items()} == \
        {"p": 4.0, "q": 0.0, "r": 3.0}
    for hostile in ({"ids": np.array([7, 0, 0])}, {"ids": np.array([-1, 0, 0])}, {"ids": np.array([0.5, 0, 0])},
                    {"ids": np.array([0, 1])}, {"shape": np.array([1, 4])}, {"shape": np.array([], int)}):
        with pytest.raises(InvalidArgument):
            build_layout([bag], values | hostile, True, "instances[0]")


class UncutModel(PolynomialModel):
    """'a' is a tensor inside the graph, but gradients cannot flow through the graph cut there."""

    def is_graph_tensor(self, name):
        return name == "a"

    def bind(self, fed, fetched):
        self.bound = (fed, fetched)

    def gradients(self, inputs, index):
        raise RuntimeError("No gradient defined for operation 'While' (op type: While)\nmore detail")


def test_a_graph_gradients_cannot_cross_is_refused_when_the_model_loads():
    with pytest.raises(InvalidArgument) as error:
        _explainer({"integratedGradientsAttribution": {}}, TWO_INPUTS, UncutModel())
    assert error.value.field == "model.explanation_spec.metadata.inputs[a].input_tensor_name"
    assert "No gradient defined" in error.value.message and "more detail" not in error.value.message
    model = UncutModel()
    _explainer({"sampledShapleyAttribution": {"pathCount": 2}}, TWO_INPUTS, model)    # predictions only: fine
    assert model.bound == (["a"], ["a"])
