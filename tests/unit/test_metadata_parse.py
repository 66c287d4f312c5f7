"""explanation_metadata.json (Explainable AI SDK format) -> ExplanationMetadata, loading and validation."""
import json

import fsspec
import pytest

from explaind.server.attributions.metadata import load_metadata_for_model, parse_metadata, validate_metadata
from explaind.server.errors import InvalidArgument
from explaind.v1 import explanation_pb2 as pb

InputMetadata = pb.ExplanationMetadata.InputMetadata
Visualization = InputMetadata.Visualization

SDK_FILE = {
    "outputs": {"probabilities": {"output_tensor_name": "output_0", "index_name_mapping": ["cat", "dog"]}},
    "inputs": {
        "picture": {
            "input_tensor_name": "image",
            "encoding": "identity",
            "modality": "image",
            "input_baselines": [0.0, 1.0],
            "domain": {"min": -1.0, "max": 1.0, "original_mean": 0.5},
            "visualization": {"type": "outlines", "polarity": "both", "color_map": "red_green",
                              "clip_above_percentile": 99.0, "clip_below_percentile": 70.0, "overlay_type": "grayscale"},
        },
        "tags": {"input_tensor_name": "tags", "encoding": "bag_of_features", "modality": "numeric",
                 "index_feature_mapping": ["a", "b"], "input_tensor_dtype": "float32"},
    },
    "framework": "tensorflow2",
    "tags": ["explainable_ai_sdk"],
}


def test_sdk_spellings_parse():
    metadata = parse_metadata(SDK_FILE)
    picture = metadata.inputs["picture"]
    assert picture.input_tensor_name == "image" and picture.modality == "image"
    assert picture.encoding == InputMetadata.IDENTITY
    assert [v.number_value for v in picture.input_baselines] == [0.0, 1.0]
    assert (picture.feature_value_domain.min_value, picture.feature_value_domain.max_value) == (-1.0, 1.0)
    assert picture.feature_value_domain.original_mean == 0.5
    vis = picture.visualization
    assert (vis.type, vis.polarity, vis.color_map, vis.overlay_type) == (
        Visualization.OUTLINES, Visualization.BOTH, Visualization.RED_GREEN, Visualization.GRAYSCALE)
    assert (vis.clip_percent_upperbound, vis.clip_percent_lowerbound) == (99.0, 70.0)
    assert metadata.inputs["tags"].encoding == InputMetadata.BAG_OF_FEATURES
    assert list(metadata.inputs["tags"].index_feature_mapping) == ["a", "b"]
    output = metadata.outputs["probabilities"]
    assert output.output_tensor_name == "output_0"
    assert [v.string_value for v in output.index_display_name_mapping.list_value.values] == ["cat", "dog"]


def test_vertex_spellings_parse_to_the_same_message():
    vertex = {
        "outputs": {"probabilities": {"outputTensorName": "output_0", "indexDisplayNameMapping": ["cat", "dog"]}},
        "inputs": {
            "picture": {"inputTensorName": "image", "encoding": "IDENTITY", "modality": "image", "inputBaselines": [0.0, 1.0],
                        "featureValueDomain": {"minValue": -1.0, "maxValue": 1.0, "originalMean": 0.5},
                        "visualization": {"type": "OUTLINES", "polarity": "BOTH", "colorMap": "RED_GREEN",
                                          "clipPercentUpperbound": 99.0, "clipPercentLowerbound": 70.0,
                                          "overlayType": "GRAYSCALE"}},
            "tags": {"input_tensor_name": "tags", "encoding": "BAG_OF_FEATURES", "modality": "numeric",
                     "index_feature_mapping": ["a", "b"]},
        },
    }
    assert parse_metadata(vertex) == parse_metadata(SDK_FILE)


def test_bad_enum_values_name_the_field():
    with pytest.raises(InvalidArgument) as error:
        parse_metadata({"inputs": {"x": {"visualization": {"polarity": "sideways"}}}})
    assert error.value.field == "model.explanation_spec.metadata.inputs[x].visualization.polarity"


def test_load_metadata_for_model_from_a_folder_and_a_url(tmp_path):
    assert load_metadata_for_model(str(tmp_path)) is None
    (tmp_path / "explanation_metadata.json").write_text(json.dumps(SDK_FILE))
    assert load_metadata_for_model(str(tmp_path)) == parse_metadata(SDK_FILE)
    with fsspec.open("memory://models/one/explanation_metadata.json", "w") as handle:
        json.dump(SDK_FILE, handle)
    assert load_metadata_for_model("memory://models/one/") == parse_metadata(SDK_FILE)
    (tmp_path / "explanation_metadata.json").write_text("{not json")
    with pytest.raises(InvalidArgument):
        load_metadata_for_model(str(tmp_path))


def _validate(document, method=None):
    validate_metadata(parse_metadata(document), ["image", "tags"], ["output_0"], method=method)


def test_validation_accepts_a_good_file():
    _validate(SDK_FILE, method="xrai")


@pytest.mark.parametrize("document, field", [
    ({"inputs": {"p": {"input_tensor_name": "nope"}}}, "inputs[p].input_tensor_name"),
    ({"outputs": {"o": {"output_tensor_name": "nope"}}}, "outputs[o].output_tensor_name"),
    ({"outputs": {"o": {"output_tensor_name": "output_0"}, "p": {"output_tensor_name": "output_0"}}}, "outputs"),
    ({"inputs": {"p": {"input_tensor_name": "image", "input_baselines": [0] * 11}}}, "inputs[p].input_baselines"),
    ({"inputs": {"p": {"input_tensor_name": "image", "input_baselines": [0]},
                 "q": {"input_tensor_name": "tags", "input_baselines": [0, 1]}}}, "inputs[q].input_baselines"),
    ({"inputs": {"q": {"input_tensor_name": "tags", "encoding": "indicator"}}}, "inputs[q].index_feature_mapping"),
])
def test_validation_errors_name_the_field(document, field):
    with pytest.raises(InvalidArgument) as error:
        _validate(document)
    assert error.value.field == f"model.explanation_spec.metadata.{field}"


def test_xrai_needs_an_image_input():
    with pytest.raises(InvalidArgument) as error:
        _validate({"inputs": {"q": {"input_tensor_name": "tags"}}}, method="xrai")
    assert error.value.field == "model.explanation_spec.metadata.inputs"


def test_tf1_tensor_names_match_signature_keys():
    _validate({"inputs": {"p": {"input_tensor_name": "image:0"}}, "outputs": {"o": {"output_tensor_name": "output_0:0"}}})
