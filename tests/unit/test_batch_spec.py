"""A batch job's request is checked whole when the job is created: every bad
field is refused at once with its code and field, never a job that fails later."""
from __future__ import annotations

import grpc
import pytest
from google.protobuf import json_format

from explaind.server.batch.spec import read_request
from explaind.server.errors import ExplaindError
from explaind.server.security import uris
from explaind.server.serving.requests import Limits
from explaind.server.store.models import ModelRecord, ModelStore
from explaind.server.store.objects import ObjectStore
from explaind.v1 import batch_service_pb2, model_pb2

LIMITS = Limits(max_instances_per_request=512, max_neighbor_count=50)


@pytest.fixture
def store(tmp_path):
    models = ModelStore(ObjectStore(str(tmp_path / "store")))
    for model_id, spec, artifact in (
            ("ig", {"parameters": {"integratedGradientsAttribution": {"stepCount": 20}}}, "/models/ig"),
            ("ex", {"parameters": {"examples": {"neighborCount": 10}}}, "/models/ex"),
            ("index-only", {"parameters": {"examples": {"neighborCount": 10}}}, "")):
        model = json_format.ParseDict({"name": f"models/{model_id}", "artifactUri": artifact,
                                       "explanationSpec": spec}, model_pb2.Model())
        models.publish(ModelRecord(model=model, build_id="b1" if model_id != "ig" else ""))
    models.claim(ModelRecord(model=model_pb2.Model(name="models/building")))
    (tmp_path / "in.jsonl").write_text('{"x": [1]}\n')
    uris.install(uris.UriPolicy())
    yield models, tmp_path
    uris.install(uris.UriPolicy())


def _request(tmp_path, **fields) -> batch_service_pb2.BatchExplainRequest:
    body = {"model": "models/ig", "uris": [str(tmp_path / "in.jsonl")], "outputUriPrefix": str(tmp_path / "out")}
    body.update(fields)
    return json_format.ParseDict(body, batch_service_pb2.BatchExplainRequest())


def _read(store, **fields):
    models, tmp_path = store
    return read_request(_request(tmp_path, **fields), models, LIMITS, default_fraction=0.1, default_batch_size=256,
                        file_max_bytes=1 << 20)


def test_a_good_request_reads_into_the_job(store):
    spec = _read(store, batchSize=32, maxFailedFraction=0.5,
                 explanationSpecOverride={"parameters": {"integratedGradientsAttribution": {"stepCount": 5}}})
    assert spec.record.model_id == "ig" and spec.batch_size == 32 and spec.max_failed_fraction == 0.5
    assert spec.files.instances_format == "jsonl" and len(spec.files.paths) == 1 and spec.explained
    assert spec.override.parameters.integrated_gradients_attribution.step_count == 5
    defaults = _read(store, model="projects/p/locations/l/models/ex")
    assert (defaults.batch_size, defaults.max_failed_fraction) == (256, 0.1)


@pytest.mark.parametrize("fields,code,field", [
    ({"model": "models/nope"}, grpc.StatusCode.NOT_FOUND, "model"),
    ({"model": "models/building"}, grpc.StatusCode.FAILED_PRECONDITION, "model"),
    ({"model": "models/../etc"}, grpc.StatusCode.INVALID_ARGUMENT, "model"),
    ({"uris": []}, grpc.StatusCode.INVALID_ARGUMENT, "uris"),
    ({"uris": ["x" * 3000]}, grpc.StatusCode.INVALID_ARGUMENT, "uris[0]"),
    ({"uris": ["/no/such/file.jsonl"]}, grpc.StatusCode.INVALID_ARGUMENT, "uris[0]"),
    ({"instancesFormat": "bigquery"}, grpc.StatusCode.INVALID_ARGUMENT, "instances_format"),
    ({"outputUriPrefix": ""}, grpc.StatusCode.INVALID_ARGUMENT, "output_uri_prefix"),
    ({"outputUriPrefix": "/out/*"}, grpc.StatusCode.INVALID_ARGUMENT, "output_uri_prefix"),
    ({"maxFailedFraction": 1.5}, grpc.StatusCode.INVALID_ARGUMENT, "max_failed_fraction"),
    ({"maxFailedFraction": -0.1}, grpc.StatusCode.INVALID_ARGUMENT, "max_failed_fraction"),
    ({"maxFailedFraction": "NaN"}, grpc.StatusCode.INVALID_ARGUMENT, "max_failed_fraction"),
    ({"batchSize": 513}, grpc.StatusCode.INVALID_ARGUMENT, "batch_size"),
    ({"batchSize": -1}, grpc.StatusCode.INVALID_ARGUMENT, "batch_size"),
    ({"displayName": "d" * 129}, grpc.StatusCode.INVALID_ARGUMENT, "display_name"),
    ({"labels": {f"k{i}": "v" for i in range(65)}}, grpc.StatusCode.INVALID_ARGUMENT, "labels"),
    ({"labels": {"k": "v" * 64}}, grpc.StatusCode.INVALID_ARGUMENT, "labels[k]"),
    ({"explanationSpecOverride": {"examplesOverride": {"neighborCount": 3}}}, grpc.StatusCode.INVALID_ARGUMENT,
     "explanation_spec_override.examples_override"),
    ({"explanationSpecOverride": {"parameters": {"integratedGradientsAttribution": {"stepCount": 500}}}},
     grpc.StatusCode.INVALID_ARGUMENT, "explanation_spec_override.parameters.integrated_gradients_attribution"
                                       ".step_count"),
    ({"explanationSpecOverride": {"parameters": {"sampledShapleyAttribution": {"pathCount": 5}}}},
     grpc.StatusCode.INVALID_ARGUMENT, "explanation_spec_override.parameters"),
    ({"model": "models/ex", "explanationSpecOverride": {"parameters": {"topK": 2}}},
     grpc.StatusCode.INVALID_ARGUMENT, "explanation_spec_override.parameters"),
    ({"model": "models/ex", "explanationSpecOverride": {"examplesOverride": {"neighborCount": 51}}},
     grpc.StatusCode.INVALID_ARGUMENT, "explanation_spec_override.examples_override.neighbor_count"),
    ({"model": "models/ex", "explanationSpecOverride": {"examplesOverride": {"returnEmbeddings": True}}},
     grpc.StatusCode.INVALID_ARGUMENT, "explanation_spec_override.examples_override.return_embeddings"),
    ({"model": "models/index-only"}, grpc.StatusCode.FAILED_PRECONDITION,
     "explanation_spec_override.examples_override.data_format"),
    ({"model": "models/index-only", "predictionsOnly": True}, grpc.StatusCode.FAILED_PRECONDITION,
     "predictions_only"),
    ({"predictionsOnly": True, "explanationSpecOverride": {"parameters": {"topK": 1}}},
     grpc.StatusCode.INVALID_ARGUMENT, "explanation_spec_override"),
    ({"instanceConfig": {"instanceType": "matrix"}}, grpc.StatusCode.INVALID_ARGUMENT,
     "instance_config.instance_type"),
])
def test_bad_requests_are_refused_naming_the_field(store, fields, code, field):
    with pytest.raises(ExplaindError) as e:
        _read(store, **fields)
    assert (e.value.code, e.value.field) == (code, field), e.value


def test_inputs_and_output_outside_the_allowed_prefixes_are_permission_denied(store):
    _, tmp_path = store
    uris.install(uris.UriPolicy([str(tmp_path / "data")]))
    with pytest.raises(ExplaindError) as e:
        _read(store)
    assert (e.value.code, e.value.field) == (grpc.StatusCode.PERMISSION_DENIED, "uris[0]")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.jsonl").write_text("[1]\n")
    with pytest.raises(ExplaindError) as e:
        _read(store, uris=[str(tmp_path / "data" / "in.jsonl")])
    assert (e.value.code, e.value.field) == (grpc.StatusCode.PERMISSION_DENIED, "output_uri_prefix")
    spec = _read(store, uris=[str(tmp_path / "data" / "in.jsonl")], outputUriPrefix=str(tmp_path / "data" / "out"))
    assert spec.output_prefix == str(tmp_path / "data" / "out")
