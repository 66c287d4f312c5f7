"""explaind's copies of Vertex AI's PredictionService messages carry Vertex's
field numbers, checked field by field against google-cloud-aiplatform itself,
and both sets of messages live in one process without symbol clashes."""
from __future__ import annotations

import pytest
from google.cloud import aiplatform_v1, aiplatform_v1beta1
from google.protobuf import descriptor_pool, json_format

from explaind.v1 import explanation_pb2
from explaind.vertex.v1 import job_service_pb2
from explaind.vertex.v1 import prediction_service_pb2 as ours_v1
from explaind.vertex.v1beta1 import prediction_service_pb2 as ours_v1beta1


# explaind.v1 fields Vertex's v1 lacks (v1beta1 has it): a v1 client never sets it.
EXPLAIND_ONLY = {"explaind.v1.Examples.gcs_source"}


def _descriptor(vertex_type):
    return vertex_type.pb(vertex_type()).DESCRIPTOR


def _same_fields(ours, theirs, path: str, seen: set) -> list[str]:
    """Every field of `ours` exists in `theirs` with the same number, name, kind and
    cardinality, recursively (enums: same values). Returns the differences."""
    if (ours.full_name, theirs.full_name) in seen:
        return []
    seen.add((ours.full_name, theirs.full_name))
    problems = []
    for field in ours.fields:
        other = theirs.fields_by_number.get(field.number)
        where = f"{path}.{field.name}"
        if other is None and field.full_name in EXPLAIND_ONLY:
            continue
        if other is None:
            problems.append(f"{where}: Vertex has no field {field.number}")
            continue
        # proto-plus renames Python keywords (type -> type_) in the package it builds.
        if other.name.rstrip("_") != field.name or other.type != field.type or other.is_repeated != field.is_repeated:
            problems.append(f"{where}: {field.name}/{field.type} vs Vertex's {other.name}/{other.type}")
        if field.message_type is not None and not field.message_type.full_name.startswith("google.protobuf."):
            problems += _same_fields(field.message_type, other.message_type, where, seen)
        if field.enum_type is not None:
            if {v.name: v.number for v in field.enum_type.values} != \
                    {v.name: v.number for v in other.enum_type.values}:
                problems.append(f"{where}: enum values differ")
    return problems


@pytest.mark.parametrize("ours,theirs", [
    (ours_v1.ExplainRequest, aiplatform_v1.ExplainRequest),
    (ours_v1.ExplainResponse, aiplatform_v1.ExplainResponse),
    (ours_v1.PredictRequest, aiplatform_v1.PredictRequest),
    (ours_v1.PredictResponse, aiplatform_v1.PredictResponse),
    (ours_v1beta1.ExplainRequest, aiplatform_v1beta1.ExplainRequest),
    (ours_v1beta1.ExplainResponse, aiplatform_v1beta1.ExplainResponse),
    (ours_v1.PredictRequest, aiplatform_v1beta1.PredictRequest),
    (ours_v1.PredictResponse, aiplatform_v1beta1.PredictResponse),
    # explaind.v1's own messages that cross to Vertex on the wire.
    (explanation_pb2.ExplanationSpecOverride, aiplatform_v1.ExplanationSpecOverride),
    (explanation_pb2.ExplanationSpecOverride, aiplatform_v1beta1.ExplanationSpecOverride),
])
def test_field_numbers_are_vertex_s(ours, theirs):
    assert _same_fields(ours.DESCRIPTOR, _descriptor(theirs), ours.DESCRIPTOR.name, set()) == []


def test_attribution_fields_one_to_seven_are_vertex_s():
    """write_vertex_explanation copies attributions as wire bytes: explaind.v1's first seven fields."""
    theirs = _descriptor(aiplatform_v1.Attribution)
    ours = explanation_pb2.Attribution.DESCRIPTOR
    assert sorted(f.number for f in theirs.fields) == list(range(1, 8))
    for field in theirs.fields:
        mine = ours.fields_by_number[field.number]
        assert (mine.name, mine.type, mine.is_repeated) == (field.name, field.type, field.is_repeated)


def test_both_packages_in_one_process_and_a_vertex_request_reads_as_ours():
    pool = descriptor_pool.Default()
    assert pool.FindMessageTypeByName("google.cloud.aiplatform.v1.ExplainRequest")
    assert pool.FindMessageTypeByName("explaind.vertex.v1.ExplainRequest")
    body = {"endpoint": "projects/p/locations/l/endpoints/e", "deployedModelId": "d",
            "instances": [{"features": [1.0, 2.0], "restricts": "", "crowding_tag": ""}],
            "explanationSpecOverride": {
                "parameters": {"topK": 3, "integratedGradientsAttribution": {"stepCount": 7}},
                "metadata": {"inputs": {"features": {"inputBaselines": [[0.0, 0.0]]}}},
                "examplesOverride": {"neighborCount": 5, "crowdingCount": 2, "dataFormat": "EMBEDDINGS",
                                     "returnEmbeddings": True, "restrictions": [
                                         {"namespaceName": "label", "allow": ["a"], "deny": ["b"]}]}}}
    # Vertex's own message class, as google-cloud-aiplatform registers it.
    vertex = json_format.ParseDict(body, aiplatform_v1.ExplainRequest.pb(aiplatform_v1.ExplainRequest()))
    assert vertex.DESCRIPTOR.full_name == "google.cloud.aiplatform.v1.ExplainRequest"
    ours = ours_v1.ExplainRequest.FromString(vertex.SerializeToString())
    assert json_format.MessageToDict(ours) == json_format.MessageToDict(vertex) == body
    assert ours.SerializeToString(deterministic=True) == vertex.SerializeToString(deterministic=True)


@pytest.mark.parametrize("version", [aiplatform_v1, aiplatform_v1beta1])
@pytest.mark.parametrize("name", ["BatchPredictionJob", "CreateBatchPredictionJobRequest",
                                  "GetBatchPredictionJobRequest", "ListBatchPredictionJobsRequest",
                                  "ListBatchPredictionJobsResponse", "CancelBatchPredictionJobRequest",
                                  "DeleteBatchPredictionJobRequest"])
def test_job_service_field_numbers_are_vertex_s(version, name):
    """JobService's messages (one copy for v1 and v1beta1), the JobState enum and the
    explaind.v1 InstanceConfig and ExplanationSpec inside them included."""
    ours = getattr(job_service_pb2, name)
    assert _same_fields(ours.DESCRIPTOR, _descriptor(getattr(version, name)), name, set()) == []
