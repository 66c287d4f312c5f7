"""The client's metadata builders write the Explainable AI SDK's file, and that file drives attributions.

When the PyPI package explainable-ai-sdk (1.3.3) is importable, its own TF2
SavedModelMetadataBuilder is the independent writer; a hand-written file in the
SDK's documented format is checked in every case.
"""
import json
import shutil

import numpy as np
import pytest
from google.protobuf import json_format

from explaind.client.metadata import KerasModelMetadataBuilder, SavedModelMetadataBuilder
from explaind.server.attributions import FeatureExplainer, load_metadata_for_model
from explaind.v1 import explanation_pb2 as pb
from tests import attr_models
from tests.xai_sdk import sdk_v2 as _sdk_v2

pytestmark = pytest.mark.slow

VISUALIZATION = {"type": "pixels", "polarity": "positive", "color_map": "viridis",
                 "clip_above_percentile": 99.0, "clip_below_percentile": 50.0, "overlay_type": "grayscale"}

# The SDK's file for the digits CNN, written by hand from its documented format.
EXPECTED_DIGITS_FILE = {
    "outputs": {"probabilities": {"output_tensor_name": "output_0"}},
    "inputs": {"digit": {"visualization": VISUALIZATION, "input_tensor_name": "image", "encoding": "identity",
                         "modality": "image", "domain": {"min": 0.0, "max": 1.0}, "input_baselines": [0.0]}},
    "framework": "tensorflow2",
    "tags": ["explainable_ai_sdk"],
}


def _describe_digits(builder, visualization, domain):
    builder.set_image_metadata("image", new_name="digit", input_baselines=[0.0], visualization=visualization, domain=domain)
    builder.set_output_metadata("output_0", "probabilities")


@pytest.fixture(scope="module")
def digits():
    return attr_models.digits_cnn()


def test_builder_writes_the_sdk_file_for_a_saved_model(digits):
    builder = SavedModelMetadataBuilder(digits)
    assert builder.get_metadata()["inputs"] == {"image": {"input_tensor_name": "image", "encoding": "identity",
                                                          "modality": "numeric"}}
    _describe_digits(builder, VISUALIZATION, {"min": 0.0, "max": 1.0})
    assert builder.get_metadata() == EXPECTED_DIGITS_FILE


def test_builder_matches_the_explainable_ai_sdk(digits, tmp_path):
    sdk = _sdk_v2()
    if sdk is None:
        pytest.skip("explainable-ai-sdk is not importable here; the hand-written file above stands in for it")
    v2, parameters = sdk
    visualization = parameters.VisualizationParameters(
        type=parameters.VisualizationType.PIXELS, polarity=parameters.Polarity.POSITIVE,
        color_map=parameters.ColorMap.VIRIDIS, clip_above_percentile=99.0, clip_below_percentile=50.0,
        overlay_type=parameters.OverlayType.OVERLAY_ON_GRAYSCALE_IMAGE)
    domain = parameters.DomainInfo(min=0.0, max=1.0)
    theirs, ours = v2.SavedModelMetadataBuilder(digits), SavedModelMetadataBuilder(digits)
    _describe_digits(theirs, visualization, domain)
    _describe_digits(ours, visualization, domain)  # ours takes the SDK's parameter objects too
    assert ours.get_metadata() == theirs.get_metadata() == EXPECTED_DIGITS_FILE

    numeric_theirs = v2.SavedModelMetadataBuilder(attr_models.mlp_model())
    numeric_ours = SavedModelMetadataBuilder(attr_models.mlp_model())
    for builder in (numeric_theirs, numeric_ours):
        builder.set_numeric_metadata("features", input_baselines=[[0.0] * 6, [1.0] * 6],
                                     index_feature_mapping=list("abcdef"))
    assert numeric_ours.get_metadata() == numeric_theirs.get_metadata()

    # The SDK's own file, beside the model, drives attributions.
    model_dir = tmp_path / "model"
    shutil.copytree(digits, model_dir)
    theirs.save_metadata(str(model_dir))
    _explain_digits(str(model_dir))


def _explain_digits(model_dir):
    spec = pb.ExplanationSpec(parameters=pb.ExplanationParameters(
        integrated_gradients_attribution=pb.IntegratedGradientsAttribution(step_count=10)))
    explainer = FeatureExplainer.load(model_dir, spec)
    images, _ = attr_models.digits_data()
    (attribution,) = explainer.explain({"image": images[:1]})[0]
    # Modality "image": Vertex's picture in feature_attributions, the values in image_attributions.
    assert list(json_format.MessageToDict(attribution.feature_attributions)["digit"]) == ["b64_jpeg"]
    values = np.array(json_format.MessageToDict(attribution.image_attributions)["digit"])
    assert values.shape == (8, 8, 1)
    assert attribution.output_name == "probabilities"
    assert attribution.images["digit"].startswith(b"\x89PNG")
    return attribution


def test_a_hand_written_sdk_file_drives_attributions(digits, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(digits, model_dir)
    (model_dir / "explanation_metadata.json").write_text(json.dumps(EXPECTED_DIGITS_FILE))
    assert load_metadata_for_model(str(model_dir)).inputs["digit"].modality == "image"
    _explain_digits(str(model_dir))


def test_save_model_with_metadata_round_trips(digits, tmp_path):
    builder = SavedModelMetadataBuilder(digits)
    _describe_digits(builder, VISUALIZATION, {"min": 0.0, "max": 1.0})
    target = builder.save_model_with_metadata(str(tmp_path / "saved"))
    assert json.loads((tmp_path / "saved" / "explanation_metadata.json").read_text()) == EXPECTED_DIGITS_FILE
    _explain_digits(target)


def test_builder_rejects_unknown_names_and_several_outputs(digits):
    builder = SavedModelMetadataBuilder(digits)
    with pytest.raises(ValueError):
        builder.set_numeric_metadata("nope")
    with pytest.raises(ValueError):
        builder.set_output_metadata("nope", "x")
    with pytest.raises(ValueError):
        SavedModelMetadataBuilder(digits, outputs_to_explain=["a", "b"])
    with pytest.raises(ValueError):
        builder.set_image_metadata("image", input_baselines=[0.0] * 11)


def test_text_and_categorical_entries_use_sdk_keys(digits):
    builder = SavedModelMetadataBuilder(digits)
    builder.set_text_metadata("image", new_name="words", encoded_name="embedding", encoding="combined_embedding")
    assert builder.get_metadata()["inputs"]["words"] == {
        "input_tensor_name": "image", "encoding": "combined_embedding", "modality": "text", "encoded_tensor_name": "embedding"}
    builder.set_categorical_metadata("words", new_name="kind", input_baselines=[["a"]])
    assert builder.get_metadata()["inputs"]["kind"] == {
        "input_tensor_name": "image", "encoding": "identity", "modality": "categorical", "input_baselines": [["a"]]}


def test_keras_builder_names_match_the_exported_signature(tmp_path):
    k = attr_models.keras()
    inputs = k.Input((3,), name="measurements")
    model = k.Model(inputs, k.layers.Dense(2)(inputs))
    builder = KerasModelMetadataBuilder(model)
    builder.set_numeric_metadata("measurements", input_baselines=[np.array([1.0, 1.0, 1.0])],
                                 index_feature_mapping=["a", "b", "c"])
    document = builder.get_metadata()
    assert document["inputs"]["measurements"]["input_baselines"] == [[1.0, 1.0, 1.0]]
    assert list(document["outputs"]) == ["output_0"]
    target = builder.save_model_with_metadata(str(tmp_path / "keras"))
    spec = pb.ExplanationSpec(parameters=pb.ExplanationParameters(
        integrated_gradients_attribution=pb.IntegratedGradientsAttribution(step_count=5), top_k=-1))
    explanations = FeatureExplainer.load(target, spec).explain({"measurements": np.ones((1, 3), np.float32) * 2})
    assert len(explanations[0]) == 2 and all(a.approximation_error < 1e-4 for a in explanations[0])


def test_the_sdk_writes_encoded_and_bag_inputs_and_the_upload_takes_its_file_unchanged(tmp_path):
    """explainable-ai-sdk's own builder writes a text model's embedding (encoded_tensor_name,
    concat_embedding) and a tabular bag (index_feature_mapping); the files drive attributions as
    the same metadata sent in the request does."""
    sdk = _sdk_v2()
    if sdk is None:
        pytest.skip("explainable-ai-sdk is not importable here")
    v2, _ = sdk
    text_path, _ = attr_models.text_classifier()
    text_dir = tmp_path / "text"
    shutil.copytree(text_path, text_dir)
    builder = v2.SavedModelMetadataBuilder(str(text_dir))
    builder.set_categorical_metadata("tokens", new_name="words", encoded_name="embedding", encoding="concat_embedding")
    builder.set_output_metadata("output_0", "sentiment")
    builder.save_metadata(str(text_dir))
    written = json.loads((text_dir / "explanation_metadata.json").read_text())
    assert written["inputs"]["words"]["encoded_tensor_name"] == "embedding"
    assert written["inputs"]["words"]["encoding"] == "concat_embedding"
    parameters = pb.ExplanationParameters(integrated_gradients_attribution=pb.IntegratedGradientsAttribution(step_count=20))
    tokens, _ = attr_models.text_data(3, seed=5)
    from_file = FeatureExplainer.load(str(text_dir), pb.ExplanationSpec(parameters=parameters)).explain({"tokens": tokens})
    in_request = pb.ExplanationSpec(parameters=parameters)
    json_format.ParseDict({"inputs": {"words": {"inputTensorName": "tokens", "encodedTensorName": "embedding",
                                                "encoding": "CONCAT_EMBEDDING"}},
                           "outputs": {"sentiment": {"outputTensorName": "output_0"}}}, in_request.metadata)
    expected = FeatureExplainer.load(text_path, in_request).explain({"tokens": tokens})
    for (got,), (want,) in zip(from_file, expected):
        assert got.output_name == "sentiment"
        assert json_format.MessageToDict(got.feature_attributions) == json_format.MessageToDict(want.feature_attributions)
        assert len(json_format.MessageToDict(got.feature_attributions)["words"]) == attr_models.TEXT_LENGTH

    tabular_path, _ = attr_models.tabular_model()
    tabular_dir = tmp_path / "tabular"
    shutil.copytree(tabular_path, tabular_dir)
    builder = v2.SavedModelMetadataBuilder(str(tabular_dir))
    builder.set_numeric_metadata("tags", index_feature_mapping=list(attr_models.TAB_TAGS))
    builder.set_categorical_metadata("color", encoded_name="color_onehot")
    builder.save_metadata(str(tabular_dir))
    explainer = FeatureExplainer.load(str(tabular_dir), pb.ExplanationSpec(parameters=parameters))
    (attribution,) = explainer.explain({"color": np.array([[2]], np.int32), "tags": np.ones((1, 5), np.float32),
                                        "size": np.ones((1, 1), np.float32)})[0]
    assert set(json_format.MessageToDict(attribution.feature_attributions)) == {"color", "size", *attr_models.TAB_TAGS}
