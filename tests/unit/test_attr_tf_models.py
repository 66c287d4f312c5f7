"""FeatureExplainer on real TensorFlow SavedModels: linear, MLP, non-differentiable, a digits CNN."""
import base64

import numpy as np
import pytest
from google.protobuf import json_format

from explaind.server.attributions import FeatureExplainer
from explaind.server.errors import InvalidArgument
from explaind.v1 import explanation_pb2 as pb
from tests import attr_models

pytestmark = pytest.mark.slow


def _spec(parameters, metadata=None):
    spec = pb.ExplanationSpec(parameters=json_format.ParseDict(parameters, pb.ExplanationParameters()))
    if metadata:
        spec.metadata.CopyFrom(json_format.ParseDict(metadata, pb.ExplanationMetadata()))
    return spec


def _override(document):
    return json_format.ParseDict(document, pb.ExplanationSpecOverride())


def _values(attribution, name):
    return np.array(json_format.MessageToDict(attribution.feature_attributions)[name])


X = np.array([[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 2.0, 0.0]], np.float32)
W = attr_models.LINEAR_WEIGHTS


@pytest.fixture(scope="module")
def linear():
    return attr_models.linear_model()


@pytest.mark.parametrize("step_count", [1, 50])
def test_integrated_gradients_on_a_linear_model_is_exact(linear, step_count):
    explainer = FeatureExplainer.load(linear, _spec({"integratedGradientsAttribution": {"stepCount": step_count}, "topK": -1}))
    explanations = explainer.explain({"x": X})
    assert len(explanations) == 2
    for x, attributions in zip(X, explanations):
        assert len(attributions) == 2
        for attribution in attributions:
            (j,) = attribution.output_index
            np.testing.assert_allclose(_values(attribution, "x"), x * W[:, j], rtol=1e-5, atol=1e-6)
            assert attribution.approximation_error < 1e-5 and not attribution.warnings
            assert attribution.output_name == "y"


def test_sampled_shapley_on_a_linear_model_is_exact(linear):
    explainer = FeatureExplainer.load(linear, _spec({"sampledShapleyAttribution": {"pathCount": 4}, "topK": -1}))
    for x, attributions in zip(X, explainer.explain({"x": X})):
        for attribution in attributions:
            np.testing.assert_allclose(_values(attribution, "x"), x * W[:, attribution.output_index[0]], rtol=1e-5, atol=1e-5)


def test_top_k_and_output_indices_select_and_order_outputs(linear):
    explainer = FeatureExplainer.load(linear, _spec({"integratedGradientsAttribution": {"stepCount": 5}}))
    outputs = X @ W + attr_models.LINEAR_BIAS
    (only,) = explainer.explain({"x": X[:1]})[0]  # default top_k 1: the highest output
    assert only.output_index[0] == int(np.argmax(outputs[0]))
    assert only.instance_output_value == pytest.approx(outputs[0].max(), rel=1e-5)
    both = explainer.explain({"x": X[:1]}, _override({"parameters": {"topK": -1}}))[0]
    values = [a.instance_output_value for a in both]
    assert values == sorted(values, reverse=True) and len(both) == 2
    chosen = explainer.explain({"x": X[:1]}, _override({"parameters": {"outputIndices": [0]}}))[0]
    assert [a.output_index[0] for a in chosen] == [0]
    with pytest.raises(InvalidArgument) as error:
        explainer.explain({"x": X[:1]}, _override({"parameters": {"outputIndices": [5]}}))
    assert error.value.field == "explanation_spec_override.parameters.output_indices[0]"


def test_baselines_from_metadata_are_averaged_and_an_override_replaces_them(linear):
    metadata = {"inputs": {"features": {"inputTensorName": "x", "inputBaselines": [[1, 1, 1, 1], 0.5]}},
                "outputs": {"score": {"outputTensorName": "y"}}}
    explainer = FeatureExplainer.load(linear, _spec({"integratedGradientsAttribution": {"stepCount": 3},
                                                     "outputIndices": [1]}, metadata))
    (attribution,) = explainer.explain({"x": X[:1]})[0]
    mean_baseline = np.array([0.75] * 4)
    np.testing.assert_allclose(_values(attribution, "features"), (X[0] - mean_baseline) * W[:, 1], rtol=1e-5)
    assert attribution.baseline_output_value == pytest.approx(mean_baseline @ W[:, 1] + attr_models.LINEAR_BIAS[1], rel=1e-5)
    assert attribution.output_name == "score"
    override = _override({"metadata": {"inputs": {"features": {"inputBaselines": [[1, 2, 3, 4]]}}}})
    (attribution,) = explainer.explain({"x": X[:1]}, override)[0]
    np.testing.assert_allclose(_values(attribution, "features"), 0.0, atol=1e-6)
    assert attribution.approximation_error == 0.0 and not attribution.warnings
    with pytest.raises(InvalidArgument) as error:
        explainer.explain({"x": X[:1]}, _override({"metadata": {"inputs": {"features": {"inputBaselines": [[1, 2]]}}}}))
    assert error.value.field == "explanation_spec_override.metadata.inputs[features].input_baselines[0]"
    with pytest.raises(InvalidArgument) as error:
        explainer.explain({"x": X[:1]}, _override({"metadata": {"inputs": {"nope": {"inputBaselines": [0]}}}}))
    assert error.value.field == "explanation_spec_override.metadata.inputs[nope]"


def test_override_cannot_change_the_method_and_ranges_name_fields(linear):
    explainer = FeatureExplainer.load(linear, _spec({"integratedGradientsAttribution": {}}))
    with pytest.raises(InvalidArgument) as error:
        explainer.explain({"x": X}, _override({"parameters": {"xraiAttribution": {}}}))
    assert error.value.field == "explanation_spec_override.parameters"
    with pytest.raises(InvalidArgument) as error:
        explainer.explain({"x": X}, _override({"parameters": {"integratedGradientsAttribution": {"stepCount": 101}}}))
    assert error.value.field == "explanation_spec_override.parameters.integrated_gradients_attribution.step_count"
    with pytest.raises(InvalidArgument) as error:
        FeatureExplainer.load(linear, _spec({"sampledShapleyAttribution": {"pathCount": 0}}))
    assert error.value.field == "model.explanation_spec.parameters.sampled_shapley_attribution.path_count"
    assert FeatureExplainer.method_of(_spec({"examples": {"neighborCount": 2}})) is None
    assert FeatureExplainer.method_of(_spec({"xraiAttribution": {}})) == "xrai"


def test_unloadable_models_and_signatures_name_the_artifact(linear, tmp_path):
    for path, signature in ((str(tmp_path / "missing"), "serving_default"), (linear, "nope")):
        with pytest.raises(InvalidArgument) as error:
            FeatureExplainer.load(path, _spec({"integratedGradientsAttribution": {}}), signature)
        assert error.value.field == "model.artifact_uri"
    explainer = FeatureExplainer.load(linear, _spec({"integratedGradientsAttribution": {}}))
    with pytest.raises(InvalidArgument) as error:
        explainer.explain({"other": X})
    assert error.value.field == "instances"


def test_metadata_naming_unknown_tensors_is_rejected(linear):
    with pytest.raises(InvalidArgument) as error:
        FeatureExplainer.load(linear, _spec({"integratedGradientsAttribution": {}},
                                            {"inputs": {"a": {"inputTensorName": "nope"}}}))
    assert error.value.field == "model.explanation_spec.metadata.inputs[a].input_tensor_name"
    with pytest.raises(InvalidArgument) as error:
        FeatureExplainer.load(linear, _spec({"xraiAttribution": {}}))
    assert error.value.field.endswith("inputs")


@pytest.fixture(scope="module")
def mlp():
    return attr_models.mlp_model()


def test_mlp_completeness_gap_is_below_one_percent_at_50_steps(mlp):
    explainer = FeatureExplainer.load(mlp, _spec({"integratedGradientsAttribution": {"stepCount": 50}, "topK": -1}))
    features = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    for attributions in explainer.explain({"features": features}):
        for attribution in attributions:
            gap = attribution.instance_output_value - attribution.baseline_output_value
            assert abs(_values(attribution, "features").sum() - gap) <= 0.01 * abs(gap)
            assert attribution.approximation_error < 0.01


def test_a_coarse_path_reports_its_approximation_error(mlp):
    explainer = FeatureExplainer.load(mlp, _spec({"integratedGradientsAttribution": {"stepCount": 1}, "topK": -1}))
    features = np.full((1, 6), 3.0, np.float32)
    attributions = explainer.explain({"features": features})[0]
    worst = max(attributions, key=lambda a: a.approximation_error)
    assert worst.approximation_error > 0.05
    assert "increase step_count" in worst.warnings[0]


def test_smoothgrad_stays_close_to_integrated_gradients(mlp):
    features = np.random.default_rng(2).normal(size=(1, 6)).astype(np.float32)
    plain = FeatureExplainer.load(mlp, _spec({"integratedGradientsAttribution": {"stepCount": 20}}))
    smooth = FeatureExplainer.load(mlp, _spec({"integratedGradientsAttribution": {
        "stepCount": 20, "smoothGradConfig": {"noiseSigma": 0.05, "noisySampleCount": 8}}}))
    a = _values(plain.explain({"features": features})[0][0], "features")
    b = _values(smooth.explain({"features": features})[0][0], "features")
    assert not np.allclose(a, b) and np.corrcoef(a, b)[0, 1] > 0.9


def test_sampled_shapley_explains_a_non_differentiable_model():
    explainer = FeatureExplainer.load(attr_models.step_model(), _spec({"sampledShapleyAttribution": {"pathCount": 2}}))
    (attribution,) = explainer.explain({"x": np.array([[1.2, 0.9, -2.1]], np.float32)})[0]
    np.testing.assert_allclose(_values(attribution, "x"), [1.0, 2.0, -6.0])
    assert attribution.approximation_error < 1e-9
    gradients = FeatureExplainer.load(attr_models.step_model(), _spec({"integratedGradientsAttribution": {}}))
    (attribution,) = gradients.explain({"x": np.array([[1.2, 0.9, -2.1]], np.float32)})[0]
    assert attribution.warnings  # zero gradients cannot account for the output change


# ----- the digits CNN -----------------------------------------------------------------

@pytest.fixture(scope="module")
def digits():
    path = attr_models.digits_cnn()
    images, labels = attr_models.digits_data()
    return path, images[1500:1508], labels[1500:1508]


def _probability_drop(predict, image, pixels, label):
    masked = image.copy()
    rows, cols = np.unravel_index(pixels, image.shape[:2])
    masked[rows, cols] = 0.0
    return predict(image[None])[0, label] - predict(masked[None])[0, label]


@pytest.mark.parametrize("method", ["integratedGradientsAttribution", "xraiAttribution"])
def test_masking_top_attributed_pixels_hurts_more_than_random_pixels(digits, method):
    path, images, _ = digits
    metadata = {"inputs": {"image": {"inputTensorName": "image", "modality": "image"}}}
    explainer = FeatureExplainer.load(path, _spec({method: {"stepCount": 30}}, metadata))
    def predict(batch):
        return explainer.model.predict({"image": batch})
    rng = np.random.default_rng(0)
    top_drops, random_drops = [], []
    for image, attributions in zip(images, explainer.explain({"image": images})):
        (attribution,) = attributions
        # Modality "image": Vertex's picture in feature_attributions, the values beside it.
        picture = json_format.MessageToDict(attribution.feature_attributions)["image"]
        assert list(picture) == ["b64_jpeg"] and base64.b64decode(picture["b64_jpeg"]).startswith(b"\xff\xd8")
        values = np.array(json_format.MessageToDict(attribution.image_attributions)["image"])
        assert values.shape == image.shape
        assert attribution.images["image"].startswith(b"\x89PNG")
        label = attribution.output_index[0]
        ranking = np.argsort(-values.sum(axis=-1).ravel(), kind="stable")
        top_drops.append(_probability_drop(predict, image, ranking[:10], label))
        random_drops.append(np.mean([_probability_drop(predict, image, rng.choice(64, 10, replace=False), label)
                                     for _ in range(5)]))
    assert np.mean(top_drops) > np.mean(random_drops) + 0.1


def test_blur_baseline_uses_the_blurred_image(digits):
    path, images, _ = digits
    explainer = FeatureExplainer.load(path, _spec({"integratedGradientsAttribution": {
        "stepCount": 20, "blurBaselineConfig": {"maxBlurSigma": 2.0}}}))
    zero = FeatureExplainer.load(path, _spec({"integratedGradientsAttribution": {"stepCount": 20}}))
    (blurred,) = explainer.explain({"image": images[:1]})[0]
    (plain,) = zero.explain({"image": images[:1]})[0]
    assert blurred.baseline_output_value != pytest.approx(plain.baseline_output_value)
    assert blurred.approximation_error < 0.05
    assert not np.allclose(_values(blurred, "image"), _values(plain, "image"))


@pytest.mark.parametrize("parameters", [
    {"integratedGradientsAttribution": {"stepCount": 20}, "topK": -1},
    {"integratedGradientsAttribution": {"stepCount": 10, "smoothGradConfig": {"noiseSigma": 0.1,
                                                                             "noisySampleCount": 3}}, "topK": 2},
    {"sampledShapleyAttribution": {"pathCount": 3}, "topK": -1},
])
def test_a_batch_equals_its_instances_one_by_one_and_shares_gradient_calls(mlp, parameters):
    """Explaining 5 instances at once gives what explaining each alone gives, with
    the gradients of every instance and output in one call instead of one per pair."""
    metadata = {"inputs": {"features": {"inputTensorName": "features",
                                        "inputBaselines": [[0.0] * 6, [0.5] * 6]}},
                "outputs": {"out": {"outputTensorName": "output_0"}}}
    explainer = FeatureExplainer.load(mlp, _spec(parameters, metadata))
    features = np.random.default_rng(4).normal(size=(5, 6)).astype(np.float32)
    calls = []
    model = explainer.model
    original = model.gradients

    def counting(inputs, index):
        calls.append(len(index))
        return original(inputs, index)

    model.gradients = counting
    together = explainer.explain({"features": features})
    batched_calls = list(calls)
    alone = [explainer.explain({"features": features[i:i + 1]})[0] for i in range(5)]
    assert len(together) == 5
    for mine, reference in zip(together, alone):
        assert [a.output_index for a in mine] == [a.output_index for a in reference]
        for a, b in zip(mine, reference):
            np.testing.assert_allclose(_values(a, "features"), _values(b, "features"), rtol=1e-4, atol=1e-6)
            assert a.instance_output_value == pytest.approx(b.instance_output_value, rel=1e-5, abs=1e-6)
            assert a.baseline_output_value == pytest.approx(b.baseline_output_value, rel=1e-5, abs=1e-6)
    if "sampledShapleyAttribution" not in parameters:
        assert len(batched_calls) == 1 and len(calls) == 1 + 5
