"""explaind's copies of Vertex AI's PredictionService messages carry Vertex's
field numbers, checked field by field against google-cloud-aiplatform itself,
and both sets of messages live in one process without symbol clashes."""
from __future__ import annotations

import pytest
from google.cloud import aiplatform_v1, aiplatform_v1beta1
from google.protobuf import descriptor_pool, json_format

from explaind.v1 import explanation_pb2
from explaind.vertex.v1 import endpoint_service_pb2 as endpoints
from explaind.vertex.v1 import job_service_pb2
from explaind.vertex.v1 import model_service_pb2 as models
from explaind.vertex.v1 import prediction_service_pb2 as ours_v1
from explaind.vertex.v1beta1 import prediction_service_pb2 as ours_v1beta1


# explaind.v1 fields Vertex's v1 lacks (v1beta1 has it): a v1 client never sets it.
# Fields v1 has and v1beta1 lacks (our messages serve both): a v1beta1 client never sets them.
EXPLAIND_ONLY = {"explaind.v1.Examples.gcs_source", "explaind.vertex.v1.ListModelsRequest.order_by",
                 "explaind.vertex.v1.ListEndpointsRequest.order_by"}


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
        # proto-plus appends "_" to names that are Python keywords or builtins (exec, type): same field.
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


# ModelService and EndpointService (vertex/models.py, vertex/endpoints_service.py): explaind.vertex.v1's
# messages serve v1 and v1beta1 alike, so each is compared with both.
RESOURCE_MESSAGES = [(getattr(module, name), name) for module, names in (
    (models, ("Model", "UploadModelRequest", "UploadModelResponse", "UploadModelOperationMetadata",
              "GetModelRequest", "ListModelsRequest", "ListModelsResponse", "DeleteModelRequest",
              "DeleteOperationMetadata", "UpdateExplanationDatasetRequest", "UpdateExplanationDatasetResponse",
              "UpdateExplanationDatasetOperationMetadata")),
    (endpoints, ("Endpoint", "DeployedModel", "CreateEndpointRequest", "CreateEndpointOperationMetadata",
                 "GetEndpointRequest", "ListEndpointsRequest", "ListEndpointsResponse", "UpdateEndpointRequest",
                 "DeleteEndpointRequest", "DeployModelRequest", "DeployModelResponse",
                 "DeployModelOperationMetadata", "UndeployModelRequest", "UndeployModelResponse",
                 "UndeployModelOperationMetadata"))) for name in names]


@pytest.mark.parametrize("vertex", [aiplatform_v1, aiplatform_v1beta1], ids=["v1", "v1beta1"])
@pytest.mark.parametrize("ours,name", RESOURCE_MESSAGES, ids=[name for _, name in RESOURCE_MESSAGES])
def test_resource_messages_carry_vertex_s_field_numbers(ours, name, vertex):
    assert _same_fields(ours.DESCRIPTOR, _descriptor(getattr(vertex, name)), name, set()) == []


def test_a_vertex_sdk_deployment_reads_as_ours():
    """What aiplatform's model.deploy() sends (dedicated resources, an explanation spec) parses field for field."""
    request = aiplatform_v1.DeployModelRequest(
        endpoint="projects/p/locations/l/endpoints/1", traffic_split={"0": 100},
        deployed_model=aiplatform_v1.DeployedModel(
            model="projects/p/locations/l/models/m@1", display_name="d",
            dedicated_resources=aiplatform_v1.DedicatedResources(
                machine_spec=aiplatform_v1.MachineSpec(machine_type="n1-standard-4", accelerator_count=1,
                                                       accelerator_type="NVIDIA_TESLA_T4"),
                min_replica_count=1, max_replica_count=2),
            explanation_spec=aiplatform_v1.ExplanationSpec(parameters=aiplatform_v1.ExplanationParameters(
                integrated_gradients_attribution=aiplatform_v1.IntegratedGradientsAttribution(step_count=9)))))
    wire = aiplatform_v1.DeployModelRequest.serialize(request)
    ours = endpoints.DeployModelRequest.FromString(wire)
    assert ours.SerializeToString(deterministic=True) == \
        aiplatform_v1.DeployModelRequest.pb(request).SerializeToString(deterministic=True)
    assert ours.deployed_model.dedicated_resources.machine_spec.accelerator_type == endpoints.NVIDIA_TESLA_T4
    assert ours.deployed_model.explanation_spec.parameters.integrated_gradients_attribution.step_count == 9


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
