"""Effective settings from the spec and an override; ranges and errors naming fields."""
import pytest
from google.protobuf import json_format

from explaind.server.attributions import parameters
from explaind.server.errors import InvalidArgument
from explaind.v1 import explanation_pb2 as pb


def _params(document):
    return json_format.ParseDict(document, pb.ExplanationParameters())


def test_defaults():
    settings = parameters.resolve(_params({"integratedGradientsAttribution": {}}))
    assert (settings.method, settings.step_count, settings.top_k, settings.smooth_grad) == ("integrated_gradients", 50, 1, None)
    smooth = parameters.resolve(_params({"xraiAttribution": {"smoothGradConfig": {}}})).smooth_grad
    assert (smooth.noisy_sample_count, smooth.noise_sigma) == (3, pytest.approx(0.1))


def test_override_changes_counts_not_the_method():
    spec = _params({"integratedGradientsAttribution": {"stepCount": 10}, "topK": 2})
    override = _params({"integratedGradientsAttribution": {"stepCount": 30,
                        "smoothGradConfig": {"featureNoiseSigma": {"noiseSigma": [{"name": "x", "sigma": 0.2}]}}},
                        "outputIndices": [1, 0]})
    settings = parameters.resolve(spec, override)
    assert settings.step_count == 30 and settings.top_k == 2 and settings.output_indices == (1, 0)
    assert settings.smooth_grad.feature_noise_sigma == {"x": pytest.approx(0.2)}
    assert parameters.resolve(spec, _params({"topK": -1})).top_k == -1
    with pytest.raises(InvalidArgument) as error:
        parameters.resolve(spec, _params({"sampledShapleyAttribution": {"pathCount": 5}}))
    assert error.value.field == "explanation_spec_override.parameters"


@pytest.mark.parametrize("document, field", [
    ({"sampledShapleyAttribution": {"pathCount": 51}}, "sampled_shapley_attribution.path_count"),
    ({"sampledShapleyAttribution": {}}, "sampled_shapley_attribution.path_count"),
    ({"integratedGradientsAttribution": {"stepCount": 101}}, "integrated_gradients_attribution.step_count"),
    ({"xraiAttribution": {"stepCount": -1}}, "xrai_attribution.step_count"),
    ({"integratedGradientsAttribution": {"smoothGradConfig": {"noisySampleCount": 51}}},
     "integrated_gradients_attribution.smooth_grad_config.noisy_sample_count"),
    ({"integratedGradientsAttribution": {"smoothGradConfig": {"noiseSigma": -1}}},
     "integrated_gradients_attribution.smooth_grad_config.noise_sigma"),
    ({"integratedGradientsAttribution": {}, "topK": -2}, "top_k"),
])
def test_range_errors_name_the_field(document, field):
    with pytest.raises(InvalidArgument) as error:
        parameters.resolve(_params(document))
    assert error.value.field == f"model.explanation_spec.parameters.{field}"


def test_override_range_errors_name_the_override_field():
    with pytest.raises(InvalidArgument) as error:
        parameters.resolve(_params({"sampledShapleyAttribution": {"pathCount": 5}}),
                           _params({"sampledShapleyAttribution": {"pathCount": 99}}))
    assert error.value.field == "explanation_spec_override.parameters.sampled_shapley_attribution.path_count"


def test_examples_spec_is_not_an_attribution_method():
    with pytest.raises(InvalidArgument):
        parameters.resolve(_params({"examples": {"neighborCount": 3}}))
