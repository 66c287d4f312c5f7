"""Vertex AI's documented JSON payloads, verbatim, read by explaind.client.payloads
(the CLI, the SDK and the REST port all read them there)."""
from __future__ import annotations

import copy

import pytest
from google.protobuf import json_format

from explaind.client import payloads
from explaind.v1 import explanation_pb2, model_pb2
from tests import vertex_payloads

VERTEX_UPLOAD_BODY = vertex_payloads.upload_body()
VERTEX_EXPLAIN_BODY = vertex_payloads.explain_body([0.1] * 8)


def test_the_documented_upload_body_parses_with_lowercase_enums():
    request = payloads.upload_request(copy.deepcopy(VERTEX_UPLOAD_BODY))
    examples = request.model.explanation_spec.parameters.examples
    assert examples.presets.modality == explanation_pb2.Presets.TABULAR
    assert examples.presets.HasField("query") and examples.presets.query == explanation_pb2.Presets.PRECISE
    assert list(examples.gcs_source.uris) == ["gs://my-bucket/data/instances.jsonl"]
    assert examples.neighbor_count == 10
    metadata = request.model.explanation_spec.metadata
    assert metadata.outputs["embedding"].output_tensor_name == "embedding"
    assert metadata.inputs["my_input"].encoding == explanation_pb2.ExplanationMetadata.InputMetadata.IDENTITY
    assert request.model.container_spec.image_uri.endswith("tf2-cpu.2-11:latest")   # recorded, not run


@pytest.mark.parametrize("spelling", ["TABULAR", "Tabular", "tabular"])
def test_enum_values_in_any_case(spelling):
    model = payloads.upload_request({"explanationSpec": {"parameters": {"examples": {
        "presets": {"modality": spelling, "query": spelling == "tabular" and "fast" or "FAST"}}}}}).model
    presets = model.explanation_spec.parameters.examples.presets
    assert presets.modality == explanation_pb2.Presets.TABULAR and presets.query == explanation_pb2.Presets.FAST


def test_a_bare_model_and_the_flag_model_id():
    body = copy.deepcopy(VERTEX_UPLOAD_BODY)
    body["modelId"] = "from-body"
    assert payloads.upload_request(body).model_id == "from-body"
    assert payloads.upload_request(body, model_id="from-flag").model_id == "from-flag"
    bare = payloads.upload_request(body["model"], model_id="bare")
    assert bare.model == payloads.upload_request(body).model and bare.model_id == "bare"


def test_fields_ignored_on_purpose_are_accepted_and_dropped():
    body = copy.deepcopy(VERTEX_UPLOAD_BODY)
    body["serviceAccount"] = "sa@example.iam.gserviceaccount.com"
    body["model"]["predictSchemata"] = {"instanceSchemaUri": "gs://b/instance.yaml"}
    body["model"]["versionAliases"] = ["default"]
    body["model"]["containerSpec"].update({"ports": [{"containerPort": 8080}], "predictRoute": "/predict",
                                           "env": [{"name": "A", "value": "1"}], "health_route": "/health"})
    request = payloads.upload_request(body)
    assert request == payloads.upload_request(VERTEX_UPLOAD_BODY)
    for name in ("predict_schemata", "version_aliases", "ports", "predict_route", "service_account"):
        assert any(name in ignored for ignored in payloads.IGNORED.values())


def test_the_migration_guide_lists_every_field_ignored_on_purpose():
    import pathlib
    import re
    guide = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "migrating-from-vertex.md").read_text()
    for ignored in payloads.IGNORED.values():
        for name in ignored:
            camel = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name)
            assert f"`{camel}`" in guide, f"docs/migrating-from-vertex.md does not list {camel}"


@pytest.mark.parametrize("mutate,field", [
    (lambda b: b["model"]["explanationSpec"]["parameters"]["examples"].update(neighbourCount=3),
     "model.explanationSpec.parameters.examples.neighbourCount"),
    (lambda b: b.update(surprise=True), "surprise"),
    (lambda b: b["model"]["explanationSpec"]["metadata"]["inputs"]["id"].update(inputTensorNme="x"),
     "model.explanationSpec.metadata.inputs.id.inputTensorNme"),
    (lambda b: b["model"]["containerSpec"].update(imageUrl="x"), "model.containerSpec.imageUrl"),
])
def test_a_field_not_understood_is_named(mutate, field):
    body = copy.deepcopy(VERTEX_UPLOAD_BODY)
    mutate(body)
    with pytest.raises(payloads.PayloadError) as error:
        payloads.upload_request(body)
    assert error.value.field == field and "unknown field" in str(error.value)


def test_parent_model_is_refused_with_the_reason():
    body = dict(copy.deepcopy(VERTEX_UPLOAD_BODY), parentModel="projects/p/locations/l/models/1")
    with pytest.raises(payloads.PayloadError) as error:
        payloads.upload_request(body)
    assert error.value.field == "parentModel" and "versions" in error.value.message


def test_bad_values_name_their_field():
    with pytest.raises(payloads.PayloadError) as error:
        payloads.upload_request({"explanationSpec": {"parameters": {"examples": {"presets": {"modality": "audio"}}}}})
    assert error.value.field == "model.explanationSpec.parameters.examples.presets.modality"
    assert "TABULAR" in error.value.message
    with pytest.raises(payloads.PayloadError) as error:
        payloads.upload_request({"model": {"displayName": 3}})
    assert error.value.field == "model.displayName"
    with pytest.raises(payloads.PayloadError) as error:
        payloads.upload_request({"model": {"labels": ["not", "a", "map"]}})
    assert error.value.field == "model.labels"


def test_the_documented_explain_body_keeps_its_override():
    request = payloads.explain_request(copy.deepcopy(VERTEX_EXPLAIN_BODY), "models/m")
    assert request.name == "models/m"
    examples = request.explanation_spec_override.examples_override
    assert (examples.neighbor_count, examples.crowding_count) == (5, 2)
    assert [(r.namespace_name, list(r.allow)) for r in examples.restrictions] == \
        [("label", ["Abyssinian", "Miniature Pinscher"])]
    instance = json_format.MessageToDict(request.instances[0])
    assert instance == VERTEX_EXPLAIN_BODY["instances"][0]
    camel = {"instances": VERTEX_EXPLAIN_BODY["instances"], "explanationSpecOverride": {"examplesOverride": {
        "neighborCount": 5, "crowdingCount": 2, "dataFormat": "instances",
        "restrictions": [{"namespaceName": "label", "allow": ["Abyssinian", "Miniature Pinscher"]}]}}}
    camel_request = payloads.explain_request(camel, "models/m")
    camel_request.explanation_spec_override.examples_override.ClearField("data_format")
    assert camel_request == request


def test_bare_instances_and_hostile_explain_bodies():
    assert len(payloads.explain_request([[1.0, 2.0], {"a": 1}]).instances) == 2
    with pytest.raises(payloads.PayloadError) as error:
        payloads.explain_request({"instances": [1], "explanation_spec_override": {"examples_override": {
            "neighbor_count": "many"}}})
    assert error.value.field.endswith("neighbor_count")
    with pytest.raises(payloads.PayloadError):
        payloads.explain_request({"instances": {"not": "a list"}})
    with pytest.raises(payloads.PayloadError):
        payloads.explain_request("instances")
    deep = [0.0]
    for _ in range(20_000):
        deep = [deep]
    with pytest.raises(payloads.PayloadError) as error:
        payloads.explain_request({"instances": [deep]})
    assert error.value.field == "instances[0]"
    with pytest.raises(payloads.PayloadError):
        payloads.explain_request({"instances": [1], "parameters": deep})
    with pytest.raises(payloads.PayloadError):
        payloads.upload_request({"model": "a string"})
    assert isinstance(payloads.upload_request({}).model, model_pb2.Model)
