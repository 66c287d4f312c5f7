"""Feature attributions through the daemon: upload an IG / sampled-Shapley model, Explain, Predict."""
from __future__ import annotations


import grpc
import numpy as np
import pytest
from google.protobuf import json_format, struct_pb2

from tests import attr_models
from tests.integration.helpers import bad_request_fields


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.server_process import ServerProcess
    base = tmp_path_factory.mktemp("attr")
    proc = ServerProcess(str(base / "store"), str(base / "log"), cache_dir=str(base / "cache")).start()
    yield proc
    assert proc.stop() == 0


def _payload(path, parameters, baselines=None):
    metadata = {"inputs": {"x": {"inputTensorName": "x"}}, "outputs": {"y": {"outputTensorName": "y"}}}
    if baselines is not None:
        metadata["inputs"]["x"]["inputBaselines"] = baselines
    return {"displayName": "linear", "artifactUri": path,
            "explanationSpec": {"parameters": parameters, "metadata": metadata}}


@pytest.mark.parametrize("method", ["integratedGradientsAttribution", "sampledShapleyAttribution"])
def test_linear_model_attributions_are_exact(server, method):
    path = attr_models.linear_model()
    params = {method: {"stepCount": 20} if method.startswith("integrated") else {"pathCount": 10}, "topK": -1}
    baseline = [0.5, -1.0, 0.0, 2.0]
    with server.client() as client:
        op = client.upload_model(_payload(path, params, baselines=[baseline]), model_id=f"lin-{method[:7].lower()}")
        model = client.wait(op, timeout=120)
        x = np.array([[1.0, 2.0, -3.0, 0.5], [0.0, 1.0, 1.0, 1.0]], np.float32)
        response = client.explain(model.name, [{"x": row.tolist()} for row in x])
        predictions = client.predict(model.name, [{"x": row.tolist()} for row in x])
    w, b = attr_models.LINEAR_WEIGHTS, attr_models.LINEAR_BIAS
    expected_outputs = x @ w + b
    np.testing.assert_allclose(np.array(predictions, dtype=np.float64).reshape(expected_outputs.shape),
                               expected_outputs, rtol=1e-5)
    for i, explanation in enumerate(response.explanations):
        assert len(explanation.attributions) == w.shape[1]
        values = [a.instance_output_value for a in explanation.attributions]
        assert values == sorted(values, reverse=True)          # sorted by output value
        for attribution in explanation.attributions:
            j = attribution.output_index[0]
            got = np.array(json_format.MessageToDict(attribution.feature_attributions)["x"], np.float64)
            np.testing.assert_allclose(got, (x[i] - baseline) * w[:, j], rtol=1e-4, atol=1e-5)
            assert attribution.instance_output_value == pytest.approx(expected_outputs[i, j], rel=1e-5)
            assert attribution.baseline_output_value == pytest.approx(float(np.array(baseline) @ w[:, j] + b[j]),
                                                                      rel=1e-5, abs=1e-5)
            assert attribution.approximation_error < 1e-3


def test_override_changes_parameters_but_not_the_method(server):
    path = attr_models.linear_model()
    with server.client() as client:
        client.wait(client.upload_model(_payload(path, {"integratedGradientsAttribution": {"stepCount": 10}}),
                                        model_id="lin-override"), timeout=120)
        x = [{"x": [1.0, 2.0, 3.0, 4.0]}]
        one = client.explain("lin-override", x, override={"parameters": {"topK": 1}})
        assert len(one.explanations[0].attributions) == 1
        zero_baseline = client.explain("lin-override", x, override={
            "metadata": {"inputs": {"x": {"inputBaselines": [[1.0, 2.0, 3.0, 4.0]]}}}})
        got = json_format.MessageToDict(zero_baseline.explanations[0].attributions[0].feature_attributions)["x"]
        assert np.allclose(got, 0.0, atol=1e-6)                # x == baseline: nothing to attribute
        with pytest.raises(grpc.RpcError) as err:
            client.explain("lin-override", x, override={"parameters": {"sampledShapleyAttribution": {"pathCount": 5}}})
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad_request_fields(err.value) == ["explanation_spec_override.parameters"]
        with pytest.raises(grpc.RpcError) as err:
            client.explain("lin-override", x, override={"parameters": {
                "integratedGradientsAttribution": {"stepCount": 500}}})
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_metadata_naming_unknown_tensors_fails_the_upload(server):
    path = attr_models.linear_model()
    payload = _payload(path, {"integratedGradientsAttribution": {"stepCount": 10}})
    payload["explanationSpec"]["metadata"]["inputs"]["x"]["inputTensorName"] = "nope"
    with server.client() as client:
        from explaind.client import OperationError
        with pytest.raises(OperationError) as err:
            client.wait(client.upload_model(payload, model_id="lin-bad"), timeout=120)
        assert err.value.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert "nope" in err.value.status.message


def test_metadata_file_beside_the_model_is_used_when_the_request_has_none(server, tmp_path):
    import shutil

    from explaind.client.metadata import SavedModelMetadataBuilder
    model_dir = tmp_path / "linear"
    shutil.copytree(attr_models.linear_model(), model_dir)
    builder = SavedModelMetadataBuilder(str(model_dir))
    builder.set_numeric_metadata("x", input_baselines=[[1.0, 1.0, 1.0, 1.0]])
    builder.save_metadata(str(model_dir))
    payload = {"displayName": "from-file", "artifactUri": str(model_dir),
               "explanationSpec": {"parameters": {"integratedGradientsAttribution": {"stepCount": 10}}}}
    with server.client() as client:
        model = client.wait(client.upload_model(payload, model_id="lin-file"), timeout=120)
        assert list(model.explanation_spec.metadata.inputs) == ["x"]      # recorded from the file
        x = np.array([2.0, 0.0, 1.0, 3.0], np.float32)
        response = client.explain("lin-file", [{"x": x.tolist()}], override={"parameters": {"topK": -1}})
    w = attr_models.LINEAR_WEIGHTS
    for attribution in response.explanations[0].attributions:
        j = attribution.output_index[0]
        got = json_format.MessageToDict(attribution.feature_attributions)["x"]
        np.testing.assert_allclose(got, (x - 1.0) * w[:, j], rtol=1e-4, atol=1e-5)   # the file's baseline


def test_concurrent_attribution_calls_queue_and_batch_like_explain(start_server):
    """Attribution calls go through the engine's batcher: concurrent calls with the
    same override share a run (batches > 1), calls with other overrides keep their
    own answers, and the queue bound answers RESOURCE_EXHAUSTED at once."""
    import asyncio
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    from explaind.v1 import prediction_service_pb2, prediction_service_pb2_grpc

    path = attr_models.linear_model()
    server = start_server(max_queue_delay_ms=50, max_batch_size=64, max_queued=40)
    with server.client() as client:
        client.wait(client.upload_model(_payload(path, {"integratedGradientsAttribution": {"stepCount": 10},
                                                        "topK": -1}), model_id="lin-load"), timeout=120)
    rng = np.random.default_rng(5)
    xs = rng.normal(size=(30, 4)).astype(np.float32)
    baselines = [None, [1.0, 1.0, 1.0, 1.0], [0.5, -1.0, 0.0, 2.0]]   # three overrides, interleaved
    requests = []
    for i, x in enumerate(xs):
        request = prediction_service_pb2.ExplainRequest(name="models/lin-load")
        request.instances.append(json_format.ParseDict({"x": x.tolist()}, struct_pb2.Value()))
        if baselines[i % 3] is not None:
            json_format.ParseDict({"metadata": {"inputs": {"x": {"inputBaselines": [baselines[i % 3]]}}}},
                                  request.explanation_spec_override)
        requests.append(request)

    async def call_all(reqs):
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            return await asyncio.gather(*(stub.Explain(r, timeout=60) for r in reqs), return_exceptions=True)

    responses = asyncio.run(call_all(requests))
    w = attr_models.LINEAR_WEIGHTS
    for i, response in enumerate(responses):
        assert not isinstance(response, Exception), response
        base = np.zeros(4) if baselines[i % 3] is None else np.array(baselines[i % 3])
        for attribution in response.explanations[0].attributions:
            j = attribution.output_index[0]
            got = np.array(json_format.MessageToDict(attribution.feature_attributions)["x"])
            np.testing.assert_allclose(got, (xs[i] - base) * w[:, j], rtol=1e-4, atol=1e-5)
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).read().decode()
    sizes = {f.name: f for f in text_string_to_metric_families(text)}["explaind_batch_size"].samples
    count = sum(s.value for s in sizes if s.name.endswith("_count") and s.labels["model"] == "lin-load")
    total = sum(s.value for s in sizes if s.name.endswith("_sum") and s.labels["model"] == "lin-load")
    assert total == 30 and count < 30, (count, total)        # every instance, in fewer runs than calls

    # A call of 41 instances against a bound of 40 queued instances is refused at once.
    big = prediction_service_pb2.ExplainRequest(name="models/lin-load")
    big.instances.extend([requests[0].instances[0]] * 41)
    (refused,) = asyncio.run(call_all([big]))
    assert isinstance(refused, grpc.aio.AioRpcError) and refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "40" in refused.details()
