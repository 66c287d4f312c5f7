"""Vertex's BatchPredictionJob read into explaind's batch request (explanationSpec
over the model's field by field, by a deployment's rule), the job's operation
shown as Vertex's resource, and ListBatchPredictionJobs' filter (Vertex's list
filter, with state); hostile values are refused naming the field."""
from __future__ import annotations

import pytest
from google.longrunning import operations_pb2
from google.protobuf import json_format
from google.rpc import status_pb2

import asyncio

from explaind.server.batch.manager import REQUEST_KEY, VERTEX_KEY
from explaind.server.control.resource_filter import parse_filter
from explaind.server.errors import ExplaindError, InvalidArgument
from explaind.server.store.models import ModelRecord
from explaind.server.store.operations import OperationRecord
from explaind.server.vertex.jobs import VertexJobs, _listed, explain_request, job_name, job_view, vertex_fields
from explaind.v1 import batch_service_pb2, model_pb2
from explaind.vertex.v1 import job_service_pb2 as js

State = batch_service_pb2.JobState


def _job(**fields) -> js.BatchPredictionJob:
    body = {"displayName": "j", "model": "projects/p/locations/l/models/m",
            "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": ["gs://b/in.jsonl"]}},
            "outputConfig": {"predictionsFormat": "jsonl", "gcsDestination": {"outputUriPrefix": "gs://b/out"}},
            "generateExplanation": True}
    body.update(fields)
    return json_format.ParseDict(body, js.BatchPredictionJob())


def test_a_vertex_job_reads_into_explaind_s_request():
    request = explain_request(_job(
        labels={"team": "x"}, manualBatchTuningParameters={"batchSize": 64}, instanceConfig={"keyField": "id"},
        dedicatedResources={"machineSpec": {"machineType": "n1-standard-4"}, "startingReplicaCount": 1}))
    assert request.model == "models/m" and list(request.uris) == ["gs://b/in.jsonl"]
    assert request.output_uri_prefix == "gs://b/out" and request.batch_size == 64 and not request.predictions_only
    assert request.instance_config.key_field == "id" and dict(request.labels) == {"team": "x"}
    assert explain_request(_job(model="projects/p/locations/l/models/m@1")).model == "models/m"
    assert explain_request(_job(generateExplanation=False)).predictions_only


class _Jobs:
    """BatchJobs' side of a create: the published model, and the request it is given."""

    def __init__(self, spec: dict):
        self.model = ModelRecord(model=json_format.ParseDict({"name": "models/m", "explanationSpec": spec},
                                                             model_pb2.Model()))
        self.created = None

    async def published(self, model_id):
        return self.model if model_id == "m" else None

    async def create(self, request, echo):
        self.created = request
        raise InvalidArgument("stop here", field="uris[0]")      # named as Vertex's field on the way out


def _create(model_spec: dict, job_spec: dict):
    jobs = _Jobs(model_spec)
    request = js.CreateBatchPredictionJobRequest(parent="projects/p/locations/l",
                                                 batch_prediction_job=_job(explanationSpec=job_spec))
    with pytest.raises(InvalidArgument) as e:
        asyncio.run(VertexJobs(jobs, None).create(request))
    return jobs.created, e.value


IG = {"parameters": {"integratedGradientsAttribution": {"stepCount": 50}},
      "metadata": {"inputs": {"x": {"inputTensorName": "x", "encoding": "IDENTITY"}}}}


def test_the_job_s_spec_overrides_the_model_s_field_by_field():
    created, error = _create(IG, {"parameters": {"integratedGradientsAttribution": {"stepCount": 7}, "topK": 2},
                                  "metadata": {"inputs": {"x": {"inputBaselines": [[0, 1]], "inputTensorName": "x"}}}})
    assert json_format.MessageToDict(created.explanation_spec_override) == {
        "parameters": {"integratedGradientsAttribution": {"stepCount": 7}, "topK": 2},
        "metadata": {"inputs": {"x": {"inputBaselines": [[0, 1]]}}}}
    assert error.field == "batch_prediction_job.input_config.gcs_source.uris[0]"
    examples = {"parameters": {"examples": {"neighborCount": 10, "presets": {"query": "PRECISE"}}}}
    created, _ = _create(examples, {"parameters": {"examples": {"neighborCount": 3, "presets": {"query": "PRECISE"}}}})
    assert json_format.MessageToDict(created.explanation_spec_override) == {"examplesOverride": {"neighborCount": 3}}


@pytest.mark.parametrize("model_spec,job_spec,field", [
    ({"parameters": {"examples": {"neighborCount": 10, "presets": {"query": "PRECISE"}}}},
     {"parameters": {"examples": {"presets": {"query": "FAST"}}}},
     "batch_prediction_job.explanation_spec.parameters.examples.presets.query"),
    (IG, {"metadata": {"inputs": {"x": {"inputTensorName": "other"}}}},
     "batch_prediction_job.explanation_spec.metadata.inputs[x].input_tensor_name"),
    (IG, {"metadata": {"inputs": {"y": {"inputTensorName": "y"}}}},
     "batch_prediction_job.explanation_spec.metadata.inputs[y]"),
    (IG, {"parameters": {"sampledShapleyAttribution": {"pathCount": 5}}},
     "batch_prediction_job.explanation_spec.parameters.sampled_shapley_attribution"),
    ({"parameters": {"examples": {"neighborCount": 10}}}, {"parameters": {"examples": {"neighborCount": 3}, "topK": 4}},
     "batch_prediction_job.explanation_spec.parameters"),
])
def test_what_no_override_can_change_must_equal_the_model_s(model_spec, job_spec, field):
    created, error = _create(model_spec, job_spec)
    assert created is None and error.field == field, error
    assert "a batch job" in error.message or "differs" in error.message or "apply" in error.message


@pytest.mark.parametrize("fields,field", [
    ({"displayName": ""}, "batch_prediction_job.display_name"),
    ({"model": "projects/p/locations/l/models/m@2"}, "batch_prediction_job.model"),
    ({"model": "projects/p/locations/l/endpoints/e"}, "batch_prediction_job.model"),
    ({"modelParameters": {"confidence": 0.5}}, "batch_prediction_job.model_parameters"),
    ({"outputConfig": {"predictionsFormat": "csv", "gcsDestination": {"outputUriPrefix": "gs://b"}}},
     "batch_prediction_job.output_config.predictions_format"),
    ({"inputConfig": {"gcsSource": {"uris": ["gs://b/x"]}}}, "batch_prediction_job.input_config.instances_format"),
    ({"generateExplanation": False, "explanationSpec": {"parameters": {"topK": 1}}},
     "batch_prediction_job.explanation_spec"),
    ({"model": "m"}, "batch_prediction_job.model"),
])
def test_bad_vertex_jobs_are_refused_naming_vertex_s_field(fields, field):
    with pytest.raises(InvalidArgument) as e:
        explain_request(_job(**fields))
    assert e.value.field == field


def _record(state, done=False, error=None, **meta_fields) -> OperationRecord:
    meta = batch_service_pb2.BatchExplainOperationMetadata(state=state, model="models/m", **meta_fields)
    meta.create_time.FromSeconds(1_700_000_000)
    operation = operations_pb2.Operation(name="operations/abc123", done=done)
    operation.metadata.Pack(meta)
    if error is not None:
        operation.error.CopyFrom(error)
    request = {"model": "models/m", "uris": ["gs://b/in"], "outputUriPrefix": "gs://b/out", "displayName": "d",
               "labels": {"team": "x"}}
    return OperationRecord(operation=operation, request={REQUEST_KEY: request, VERTEX_KEY: {
        "explanationSpec": {"parameters": {"topK": 3}}}})


def test_a_job_s_operation_shows_as_vertex_s_resource():
    running = job_view(_record(State.JOB_STATE_RUNNING, rows_total=10, rows_succeeded=4, rows_failed=1,
                               output_directory="gs://b/out/prediction-m-x"), "projects/p/locations/us")
    assert running.name == "projects/p/locations/us/batchPredictionJobs/abc123"
    assert running.model == "projects/p/locations/us/models/m" and running.display_name == "d"
    assert running.input_config.instances_format == "jsonl" and list(running.input_config.gcs_source.uris) == ["gs://b/in"]
    assert running.output_config.gcs_destination.output_uri_prefix == "gs://b/out"
    assert running.explanation_spec.parameters.top_k == 3 and running.generate_explanation
    assert (running.completion_stats.successful_count, running.completion_stats.failed_count,
            running.completion_stats.incomplete_count) == (4, 1, 5)
    assert not running.output_info.gcs_output_directory          # written only once SUCCEEDED
    assert job_view(_record(State.JOB_STATE_RUNNING), "projects/p/locations/us", cancelling=True).state == \
        State.JOB_STATE_CANCELLING
    assert running.create_time.seconds == 1_700_000_000
    done = job_view(_record(State.JOB_STATE_SUCCEEDED, done=True, output_directory="gs://b/out/prediction-m-x"),
                    "projects/p/locations/us")
    assert done.output_info.gcs_output_directory == "gs://b/out/prediction-m-x"
    failed = job_view(_record(State.JOB_STATE_FAILED, done=True, error=status_pb2.Status(code=3, message="bad")),
                      "projects/p/locations/us")
    assert failed.error.message == "bad" and failed.state == State.JOB_STATE_FAILED


def test_list_filter_on_state_display_name_and_labels():
    jobs = [js.BatchPredictionJob(display_name="a", state=State.JOB_STATE_SUCCEEDED, labels={"team": "x"}),
            js.BatchPredictionJob(display_name="b", state=State.JOB_STATE_FAILED, labels={"team": "y"}),
            js.BatchPredictionJob(display_name="c", state=State.JOB_STATE_RUNNING)]

    def names(text):
        wanted = parse_filter(text, states=tuple(State.keys()))
        return [j.display_name for j in jobs if wanted(_listed(j))]
    assert names("") == ["a", "b", "c"]
    assert names("state=JOB_STATE_SUCCEEDED") == ["a"]
    assert names('state="JOB_STATE_FAILED" OR display_name="c"') == ["b", "c"]
    assert names("labels.team=x AND state!=JOB_STATE_FAILED") == ["a"]
    assert names("NOT state=JOB_STATE_RUNNING") == ["a", "b"]
    assert names("-labels.team=y") == ["a", "c"]
    assert names('display_name="a" OR display_name = "x AND y"') == ["a"]
    assert names("(state=JOB_STATE_FAILED OR state=JOB_STATE_RUNNING) AND NOT display_name=c") == ["b"]
    with pytest.raises(InvalidArgument):        # no state on Vertex's model and endpoint lists
        parse_filter("state=JOB_STATE_FAILED")

@pytest.mark.parametrize("text", ["state=DONE", "owner=me", "state=JOB_STATE_FAILED AND a=b OR c=d",
                                  "x" * 2001, "state ~ JOB_STATE_FAILED", 'display_name="unterminated',
                                  "state=", "state==JOB_STATE_FAILED", "state:JOB_STATE_FAILED", "(state=X",
                                  "NOT", "state=JOB_STATE_FAILED AND"])
def test_hostile_filters_are_invalid_argument_naming_filter(text):
    with pytest.raises(InvalidArgument) as e:
        parse_filter(text, states=tuple(State.keys()))
    assert e.value.field == "filter"


@pytest.mark.parametrize("name", ["batchPredictionJobs/1", "projects/p/locations/l/batchPredictionJobs/a/b",
                                  "projects/p/locations/l/batchPredictionJobs/../x",
                                  "projects/p/locations/l/models/1", "projects//locations/l/batchPredictionJobs/1"])
def test_hostile_job_names_are_invalid_argument(name):
    with pytest.raises(InvalidArgument) as e:
        job_name(name)
    assert e.value.field == "name"


def test_explaind_fields_are_named_as_vertex_s():
    for ours, theirs in (("uris[2]", "batch_prediction_job.input_config.gcs_source.uris[2]"),
                         ("explanation_spec_override.parameters.top_k",
                          "batch_prediction_job.explanation_spec.parameters.top_k"),
                         ("batch_size", "batch_prediction_job.manual_batch_tuning_parameters.batch_size"),
                         ("something_else", "something_else")):
        with pytest.raises(ExplaindError) as e:
            with vertex_fields():
                raise ExplaindError("x", field=ours)
        assert e.value.field == theirs
