"""Google's Explainable AI notebooks against a real daemon: the image notebook (xai_preprocess and
xai_model signatures, JPEG bytes in, b64_jpeg pictures and predictions out), the tabular notebook's
per-name table (index_feature_mapping), a text classifier explained over its embedding from the
Explainable AI SDK's file, refusals at upload, and exact Shapley. Each answer is read as the
notebooks read it, through Vertex's generated client, Vertex's REST API and explaind.v1."""
from __future__ import annotations

import base64
import json
import shutil
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from google.cloud import aiplatform_v1
from google.protobuf import json_format, struct_pb2

from tests import attr_models
from tests.integration.helpers import bad_request_fields, status_fields
from tests.server_process import ServerProcess, pick_free_port

pytestmark = pytest.mark.slow

PARENT = "projects/my-project/locations/us-central1"
IMAGE_METADATA = {"inputs": {"image": {"input_tensor_name": "numpy_inputs", "modality": "image"}},
                  "outputs": {"class": {"output_tensor_name": "output_0"}}}
TABULAR_METADATA = {"inputs": {
    "color": {"inputTensorName": "color", "encodedTensorName": "color_onehot"},
    "tags": {"inputTensorName": "tags", "encoding": "BAG_OF_FEATURES", "modality": "numeric",
             "indexFeatureMapping": list(attr_models.TAB_TAGS)},
    "size": {"inputTensorName": "size"}}, "outputs": {"price": {"outputTensorName": "price"}}}
TABULAR_ROW = {"color": [2], "tags": [1.0, 0.0, 1.0, 1.0, 0.0], "size": [0.7]}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("notebooks")
    proc = ServerProcess(str(base / "store"), str(base / "server.log"), cache_dir=str(base / "cache"),
                         http_port=pick_free_port()).start()
    yield proc
    assert proc.stop() == 0, proc.log_tail()


def _http(server, path: str, body: dict):
    request = urllib.request.Request(f"http://127.0.0.1:{server.http_port}{path}", data=json.dumps(body).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _rest_upload(server, model_id: str, model: dict) -> dict:
    """Vertex's REST upload, polled until done; the finished operation."""
    status, operation = _http(server, f"/v1/{PARENT}/models:upload", {"model": model, "modelId": model_id})
    assert status == 200, operation
    end = time.monotonic() + 180
    while not operation.get("done") and time.monotonic() < end:
        time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/v1/{operation['name']}", timeout=30) as r:
            operation = json.loads(r.read())
    assert operation.get("done") and "error" not in operation, operation
    return operation


def _vertex(server):
    transport = aiplatform_v1.services.prediction_service.transports.grpc.PredictionServiceGrpcTransport(
        channel=grpc.insecure_channel(server.target))
    return aiplatform_v1.PredictionServiceClient(transport=transport)


def _vertex_explain(server, endpoint: str, instances: list):
    request = aiplatform_v1.ExplainRequest(endpoint=f"{PARENT}/endpoints/{endpoint}")
    request.instances.extend([json_format.ParseDict(i, struct_pb2.Value()) for i in instances])
    return _vertex(server).explain(request=request)


@pytest.fixture(scope="module")
def image_model(server):
    import tensorflow as tf

    path = attr_models.image_notebook_model()
    _rest_upload(server, "cifar", {"displayName": "cifar10", "artifactUri": path, "explanationSpec": {
        "parameters": {"integratedGradientsAttribution": {"stepCount": 50}}, "metadata": IMAGE_METADATA}})
    pictures = attr_models.jpeg_images(2, seed=3)
    loaded = tf.saved_model.load(path)
    served = loaded.signatures["serving_default"](bytes_inputs=tf.constant(pictures))["output_0"].numpy()
    return pictures, served


def _decoded_jpeg(b64: str) -> np.ndarray:
    import tensorflow as tf

    return tf.io.decode_jpeg(base64.b64decode(b64)).numpy()


def test_the_image_notebook_through_vertex_grpc_rest_and_explaind_v1(server, image_model):
    pictures, served = image_model
    instances = [{"bytes_inputs": {"b64": base64.b64encode(p).decode()}} for p in pictures]
    # As the notebook reads it: response.predictions, then each explanation's picture.
    response = _vertex_explain(server, "cifar", instances)
    np.testing.assert_allclose(np.array([list(p) for p in response.predictions]), served, rtol=1e-5, atol=1e-7)
    for prediction, explanation in zip(response.predictions, response.explanations):
        attributions = dict(explanation.attributions[0].feature_attributions)
        assert explanation.attributions[0].output_index[0] == int(np.argmax(prediction))
        assert _decoded_jpeg(attributions["image"]["b64_jpeg"]).shape == (32, 32, 3)
    status, answer = _http(server, f"/v1/{PARENT}/endpoints/cifar:explain", {"instances": instances})
    assert status == 200, answer
    np.testing.assert_allclose(answer["predictions"], served, rtol=1e-5, atol=1e-7)
    picture = answer["explanations"][1]["attributions"][0]["featureAttributions"]["image"]
    assert list(picture) == ["b64_jpeg"] and _decoded_jpeg(picture["b64_jpeg"]).shape == (32, 32, 3)
    with server.client() as client:
        mine = client.explain("cifar", instances)
    np.testing.assert_allclose([json_format.MessageToDict(p) for p in mine.predictions], served, rtol=1e-5, atol=1e-7)
    attribution = mine.explanations[0].attributions[0]
    assert list(json_format.MessageToDict(attribution.feature_attributions)["image"]) == ["b64_jpeg"]
    values = np.array(json_format.MessageToDict(attribution.image_attributions)["image"])
    gap = attribution.instance_output_value - attribution.baseline_output_value
    assert values.shape == (32, 32, 3) and abs(values.sum() - gap) <= 0.01 * abs(gap)


def test_the_tabular_notebooks_table_reads_every_feature_by_name(server):
    path, _ = attr_models.tabular_model()
    with server.client() as client:
        client.wait(client.upload_model({"displayName": "houses", "artifactUri": path, "explanationSpec": {
            "parameters": {"integratedGradientsAttribution": {"stepCount": 50}}, "metadata": TABULAR_METADATA}},
            model_id="houses"), timeout=180)
        predicted = client.predict("houses", [TABULAR_ROW])
    response = _vertex_explain(server, "houses", [TABULAR_ROW])
    value = response.predictions[0][0]                # the notebook's prediction[0][0][0]
    assert value == pytest.approx(predicted[0][0], rel=1e-6)
    attributions = response.explanations[0].attributions[0].feature_attributions
    rows = [[name, attributions[name]] for name in attr_models.TAB_TAGS]     # the notebook's table
    assert [name for name, _ in rows] == list(attr_models.TAB_TAGS)
    assert rows[1][1] == 0.0 and rows[4][1] == 0.0                   # absent tags: nothing to attribute
    total = sum(v for _, v in rows) + attributions["color"][0] + attributions["size"][0]
    attribution = response.explanations[0].attributions[0]
    assert total == pytest.approx(attribution.instance_output_value - attribution.baseline_output_value, rel=0.01)


def test_the_text_classifier_from_the_sdk_file_answers_per_token(server, tmp_path):
    """The Explainable AI SDK's builder writes the file beside the model; the upload takes it unchanged."""
    from tests.xai_sdk import sdk_v2

    sdk = sdk_v2()
    if sdk is None:
        pytest.skip("explainable-ai-sdk is not importable here")
    text_path, _ = attr_models.text_classifier()
    model_dir = tmp_path / "text"
    shutil.copytree(text_path, model_dir)
    builder = sdk[0].SavedModelMetadataBuilder(str(model_dir))
    builder.set_categorical_metadata("tokens", new_name="words", encoded_name="embedding", encoding="concat_embedding")
    builder.save_metadata(str(model_dir))
    tokens, _ = attr_models.text_data(2, seed=8)
    with server.client() as client:
        model = client.wait(client.upload_model({"displayName": "text", "artifactUri": str(model_dir),
                                                 "explanationSpec": {"parameters": {
                                                     "integratedGradientsAttribution": {"stepCount": 50}}}},
                                                model_id="text"), timeout=180)
        assert model.explanation_spec.metadata.inputs["words"].encoded_tensor_name == "embedding"
    response = _vertex_explain(server, "text", [row.tolist() for row in tokens])
    for prediction, explanation in zip(response.predictions, response.explanations):
        attribution = explanation.attributions[0]
        words = list(attribution.feature_attributions["words"])
        assert len(words) == attr_models.TEXT_LENGTH
        assert sum(words) == pytest.approx(attribution.instance_output_value - attribution.baseline_output_value,
                                           rel=0.01)
        assert attribution.output_index[0] == int(np.argmax(list(prediction)))


def test_refusals_come_at_upload_naming_the_metadata_field(server):
    text_path, _ = attr_models.text_classifier()
    needs_no_model = {"displayName": "t", "artifactUri": text_path, "explanationSpec": {
        "parameters": {"integratedGradientsAttribution": {"stepCount": 10}},
        "metadata": {"inputs": {"words": {"inputTensorName": "tokens", "encoding": "CONCAT_EMBEDDING"}}}}}
    tabular_path, _ = attr_models.tabular_model()
    wrong_mapping = {"displayName": "h", "artifactUri": tabular_path, "explanationSpec": {
        "parameters": {"integratedGradientsAttribution": {"stepCount": 10}},
        "metadata": {"inputs": dict(TABULAR_METADATA["inputs"], tags={
            "inputTensorName": "tags", "encoding": "BAG_OF_FEATURES", "indexFeatureMapping": ["a", "b"]})}}}
    from explaind.client import OperationError

    with server.client() as client:
        with pytest.raises(grpc.RpcError) as error:                 # refused by UploadModel itself
            client.upload_model(needs_no_model, model_id="refused-now")
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad_request_fields(error.value) == ["model.explanation_spec.metadata.inputs[words].encoded_tensor_name"]
        with pytest.raises(OperationError) as failed:               # refused when the model loads, in the upload
            client.wait(client.upload_model(wrong_mapping, model_id="refused-on-load"), timeout=180)
        assert failed.value.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert status_fields(failed.value.status) == ["model.explanation_spec.metadata.inputs[tags].index_feature_mapping"]
    status, answer = _http(server, f"/v1/{PARENT}/models:upload", {"model": needs_no_model, "modelId": "rest-refused"})
    assert status == 400 and "encoded_tensor_name" in json.dumps(answer)


def test_exact_shapley_says_so_in_explaind_v1_and_vertex_gets_the_same_values(server):
    path, _ = attr_models.tabular_model()
    grouped = json.loads(json.dumps(TABULAR_METADATA))
    grouped["inputs"]["color"]["groupName"] = grouped["inputs"]["size"]["groupName"] = "physical"
    with server.client() as client:
        client.wait(client.upload_model({"displayName": "exact", "artifactUri": path, "explanationSpec": {
            "parameters": {"sampledShapleyAttribution": {"pathCount": 50}}, "metadata": grouped}},
            model_id="exact"), timeout=180)
        mine = client.explain("exact", [TABULAR_ROW]).explanations[0].attributions[0]
        sampled = client.explain("exact", [TABULAR_ROW], override={"parameters": {
            "sampledShapleyAttribution": {"pathCount": 2}}}).explanations[0].attributions[0]
    assert json_format.MessageToDict(mine)["shapleyComputation"] == "EXACT"
    assert not mine.HasField("feature_attribution_errors")
    assert json_format.MessageToDict(sampled)["shapleyComputation"] == "SAMPLED"
    assert set(json_format.MessageToDict(sampled.feature_attribution_errors)) == {"physical", *attr_models.TAB_TAGS}
    vertex = _vertex_explain(server, "exact", [TABULAR_ROW]).explanations[0].attributions[0]
    assert json_format.MessageToDict(type(vertex).pb(vertex)) == {
        k: v for k, v in json_format.MessageToDict(mine).items() if k != "shapleyComputation"}
