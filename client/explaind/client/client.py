"""A thin Python client over the generated stubs: upload, poll, explain.

    from explaind.client import Client
    with Client("localhost:8500") as client:
        op = client.upload_model(model_dict, model_id="flowers")
        model = client.wait(op, on_progress=print)
        response = client.explain("models/flowers", instances=[...], neighbor_count=5)
"""
from __future__ import annotations

import functools
import time

import grpc
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import duration_pb2, struct_pb2

from explaind.client import payloads
from explaind.client.retries import channel_options, same_upload, upload_with_retry
from explaind.client.channel import MAX_MESSAGE_BYTES, make_channel  # noqa: F401 (re-exported)
from explaind.client.values import to_python, to_value
from explaind.v1 import batch_service_pb2, batch_service_pb2_grpc, explanation_pb2, model_pb2, model_service_pb2, \
    model_service_pb2_grpc, prediction_service_pb2, prediction_service_pb2_grpc


class OperationError(Exception):
    """The operation ended with an error (a google.rpc.Status)."""

    def __init__(self, status):
        super().__init__(f"{grpc.StatusCode(_code_tuple(status.code)).name}: {status.message}"
                         if _code_tuple(status.code) else status.message)
        self.status = status


def _code_tuple(code: int):
    for c in grpc.StatusCode:
        if c.value[0] == code:
            return c.value
    return None


class Client:
    def __init__(self, target: str = "localhost:8500", channel: grpc.Channel | None = None, **security):
        """`security`: make_channel's tls, tls_ca_file, tls_cert_file, tls_key_file,
        tls_server_name, token, token_file (TLS, mutual TLS, a bearer token). The retry
        policy (retries.py) applies to channels made here, not to one passed in."""
        self.channel = channel or make_channel(target, options=channel_options(MAX_MESSAGE_BYTES), **security)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self.predictions = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.operations = operations_pb2_grpc.OperationsStub(self.channel)
        self.batches = batch_service_pb2_grpc.BatchServiceStub(self.channel)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.channel.close()

    # --- models ---
    def upload_model(self, model: dict | model_pb2.Model, model_id: str = "", timeout: float = 60) -> operations_pb2.Operation:
        """`model`: a Model message, its JSON form, or a whole UploadModel request body
        ({"model": {...}, "modelId": ...}) as Vertex AI documents it (camelCase or
        snake_case, enum values in any case). A non-empty `model_id` replaces the body's.
        Raises PayloadError naming a field explaind does not understand. With a model id
        the upload is retried on UNAVAILABLE (see retries.py); without one, never."""
        if isinstance(model, model_pb2.Model):
            request = model_service_pb2.UploadModelRequest(model=model, model_id=model_id)
        else:
            request = payloads.upload_request(model, model_id)
        send = functools.partial(self.models.UploadModel, request, timeout=timeout)
        if not request.model_id:
            return send()
        return upload_with_retry(send, lambda: self._started_upload(request.model, request.model_id))

    def _started_upload(self, model: model_pb2.Model, model_id: str) -> operations_pb2.Operation | None:
        """The newest operation of `model_id` if the model stored there is `model`."""
        try:
            stored = self.get_model(model_id)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        operations = self.list_operations(filter=f"model={model_id}") if same_upload(stored, model) else []
        return max(operations, key=lambda op: upload_metadata(op).create_time.ToNanoseconds(), default=None)

    def get_model(self, name: str, timeout: float = 30) -> model_pb2.Model:
        return self.models.GetModel(model_service_pb2.GetModelRequest(name=_model_name(name)), timeout=timeout)

    def list_models(self, timeout: float = 30) -> list[model_pb2.Model]:
        out, token = [], ""
        while True:
            page = self.models.ListModels(model_service_pb2.ListModelsRequest(page_token=token), timeout=timeout)
            out.extend(page.models)
            token = page.next_page_token
            if not token:
                return out

    def update_explanation_dataset(self, name: str, uris: list[str] | None = None, remove_ids=None,
                                   retrain: bool = False, jsonl: bool = False, request=None,
                                   timeout: float = 60) -> operations_pb2.Operation:
        """Adds the examples of `uris`, removes those with ids `remove_ids`, or retrains
        the index: a new version of the model (wait() returns it). `jsonl`: every file
        is JSONL whatever its name (exampleGcsSource.dataFormat = JSONL).

        `request`: an UpdateExplanationDatasetRequest, its JSON body as Vertex AI
        documents it ({"examples": {"exampleGcsSource": ...}}, with explaind's
        removeExampleIds and retrain) or the bare Examples. Each argument given
        (uris, remove_ids, retrain) replaces that part of it, as command-line flags
        override a file. Raises PayloadError naming a field explaind does not
        understand. Not retried: a repeat would apply the change twice."""
        if isinstance(request, model_service_pb2.UpdateExplanationDatasetRequest):
            message = model_service_pb2.UpdateExplanationDatasetRequest()
            message.CopyFrom(request)
        else:
            message = payloads.update_request(request if request is not None else {})
        message.model = _model_name(name)
        if uris:
            message.examples.ClearField("example_gcs_source")
            message.examples.ClearField("gcs_source")
            source = message.examples.example_gcs_source if jsonl else message.examples
            if jsonl:
                source.data_format = source.JSONL
            source.gcs_source.uris.extend(uris)
        if remove_ids is not None:
            del message.remove_example_ids[:]
            message.remove_example_ids.extend(remove_ids)
        if retrain:
            message.retrain = True
        return self.models.UpdateExplanationDataset(message, timeout=timeout)

    def delete_model(self, name: str, timeout: float = 30) -> None:
        self.models.DeleteModel(model_service_pb2.DeleteModelRequest(name=_model_name(name)), timeout=timeout)

    # --- operations ---
    def get_operation(self, name: str, timeout: float = 30) -> operations_pb2.Operation:
        return self.operations.GetOperation(operations_pb2.GetOperationRequest(name=name), timeout=timeout)

    def list_operations(self, filter: str = "", timeout: float = 30) -> list[operations_pb2.Operation]:
        """Every operation, or those matching `filter` (e.g. "done=false AND model=tabular")."""
        out, token = [], ""
        while True:
            page = self.operations.ListOperations(operations_pb2.ListOperationsRequest(page_token=token,
                                                                                       filter=filter),
                                                  timeout=timeout)
            out.extend(page.operations)
            token = page.next_page_token
            if not token:
                return out

    def cancel_operation(self, name: str, timeout: float = 30) -> None:
        self.operations.CancelOperation(operations_pb2.CancelOperationRequest(name=name), timeout=timeout)

    def delete_operation(self, name: str, timeout: float = 30) -> None:
        self.operations.DeleteOperation(operations_pb2.DeleteOperationRequest(name=name), timeout=timeout)

    def wait_operation(self, name: str, timeout: float = 10) -> operations_pb2.Operation:
        request = operations_pb2.WaitOperationRequest(name=name, timeout=duration_pb2.Duration(seconds=int(timeout)))
        return self.operations.WaitOperation(request, timeout=timeout + 10)

    def wait(self, operation: operations_pb2.Operation | str, timeout: float | None = None,
             on_progress=None, poll_seconds: float = 1.0) -> model_pb2.Model:
        """Waits for an upload or an update; returns the Model or raises OperationError."""
        op = self._poll_until_done(operation, timeout, on_progress, upload_metadata, poll_seconds, "operation")
        return operation_result(op).model

    def _poll_until_done(self, operation: operations_pb2.Operation | str, timeout: float | None, on_progress,
                         metadata_of, poll_seconds: float, kind: str) -> operations_pb2.Operation:
        """Polls WaitOperation until the operation is done; the done operation, or OperationError
        (failed or cancelled), or TimeoutError. `on_progress(metadata_of(op))` after every poll."""
        name = operation if isinstance(operation, str) else operation.name
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            left = poll_seconds if end is None else max(0.0, min(poll_seconds, end - time.monotonic()))
            op = self.wait_operation(name, timeout=max(1, int(left)))
            if on_progress is not None:
                on_progress(metadata_of(op))
            if op.done:
                if op.HasField("error"):
                    raise OperationError(op.error)
                return op
            if end is not None and time.monotonic() >= end:
                raise TimeoutError(f"{kind} {name} not done after {timeout}s")

    # --- predictions ---
    def explain(self, name: str, instances, neighbor_count: int = 0, crowding_count: int = 0,
                restrictions: list[dict] | None = None, return_embeddings: bool = False,
                embeddings: bool = False, override: dict | None = None,
                timeout: float = 30) -> prediction_service_pb2.ExplainResponse:
        """`instances`: a list of JSON values (dicts keyed by input name, or embeddings when
        embeddings=True), or a whole Explain request body as Vertex AI documents it
        ({"instances": [...], "explanation_spec_override": {...}}).

        `override` (an ExplanationSpecOverride as JSON) replaces the body's; then each
        argument given (a count above 0, restrictions, a flag set) replaces that part
        of it, as command-line flags override a file."""
        request = payloads.explain_request(instances, _model_name(name))
        if override is not None:
            request.explanation_spec_override.Clear()
            payloads.parse(override, request.explanation_spec_override, "explanation_spec_override")
        examples = request.explanation_spec_override.examples_override
        if neighbor_count:
            examples.neighbor_count = neighbor_count
        if crowding_count:
            examples.crowding_count = crowding_count
        if restrictions is not None:
            del examples.restrictions[:]
            for i, restriction in enumerate(restrictions):
                restriction = dict(restriction)
                if "namespace" in restriction:      # the short form the CLI's --restrict documents
                    restriction["namespace_name"] = restriction.pop("namespace")
                payloads.parse(restriction, examples.restrictions.add(), f"restrictions[{i}]")
        if return_embeddings:
            examples.return_embeddings = True
        if embeddings:
            examples.data_format = explanation_pb2.ExamplesOverride.DataFormat.EMBEDDINGS
        return self.predictions.Explain(request, timeout=timeout)

    # --- batch jobs ---
    def batch_explain(self, name: str, uris: list[str] | str, output_uri_prefix: str,
                      instances_format: str = "jsonl", override: dict | None = None, display_name: str = "",
                      labels: dict | None = None, predictions_only: bool = False, max_failed_fraction: float = 0,
                      batch_size: int = 0, instance_config: dict | None = None,
                      timeout: float = 60) -> operations_pb2.Operation:
        """Starts a batch job explaining every row of `uris` (jsonl, csv, tf-record,
        tf-record-gzip or file-list) into a new folder under `output_uri_prefix`, as a
        Vertex AI batch prediction job with explanations does (docs/batch.md). `override`:
        an ExplanationSpecOverride as JSON, applied to every row. Returns the operation;
        wait_batch() waits for it. Not retried: a repeat would start a second job."""
        request = batch_service_pb2.BatchExplainRequest(
            model=_model_name(name), uris=[uris] if isinstance(uris, str) else list(uris),
            instances_format=instances_format, output_uri_prefix=output_uri_prefix, display_name=display_name,
            labels=labels or {}, predictions_only=predictions_only, max_failed_fraction=max_failed_fraction,
            batch_size=batch_size)
        if override is not None:
            payloads.parse(override, request.explanation_spec_override, "explanation_spec_override")
        if instance_config is not None:
            payloads.parse(instance_config, request.instance_config, "instance_config")
        return self.batches.BatchExplain(request, timeout=timeout)

    def wait_batch(self, operation: operations_pb2.Operation | str, timeout: float | None = None,
                   on_progress=None, poll_seconds: float = 1.0) -> batch_service_pb2.BatchExplainResponse:
        """Waits for a batch job; its BatchExplainResponse (the output folder, its files and counts),
        or OperationError (failed or cancelled). `on_progress(metadata)` after every poll."""
        op = self._poll_until_done(operation, timeout, on_progress, batch_metadata, poll_seconds, "batch job")
        response = batch_service_pb2.BatchExplainResponse()
        op.response.Unpack(response)
        return response

    def predict(self, name: str, instances: list, timeout: float = 30) -> list:
        response = self.predictions.Predict(prediction_service_pb2.PredictRequest(
            name=_model_name(name), instances=[_value(i) for i in instances]), timeout=timeout)
        return [to_python(v) for v in response.predictions]


def operation_result(op: operations_pb2.Operation):
    """A done operation's response: UploadModelResponse or UpdateExplanationDatasetResponse."""
    for kind in (model_service_pb2.UploadModelResponse, model_service_pb2.UpdateExplanationDatasetResponse):
        response = kind()
        if op.response.Unpack(response):
            return response
    raise ValueError(f"operation {op.name} has no model response")


def upload_metadata(op: operations_pb2.Operation) -> model_service_pb2.UploadModelOperationMetadata:
    meta = model_service_pb2.UploadModelOperationMetadata()
    if op.HasField("metadata"):
        op.metadata.Unpack(meta)
    return meta


def batch_metadata(op: operations_pb2.Operation) -> batch_service_pb2.BatchExplainOperationMetadata:
    """A batch job's state and row counts (empty for any other operation)."""
    meta = batch_service_pb2.BatchExplainOperationMetadata()
    if op.HasField("metadata"):
        op.metadata.Unpack(meta)
    return meta


def _model_name(name: str) -> str:
    return name if name.startswith("models/") else f"models/{name}"


def _value(instance) -> struct_pb2.Value:
    return to_value(instance)
