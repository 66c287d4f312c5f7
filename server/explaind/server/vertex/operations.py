"""Long-running operations as Vertex's clients see them.

Vertex names an operation after its resource
(`projects/{p}/locations/{l}/models/{m}/operations/{id}`, `.../endpoints/{e}/operations/{id}`,
`.../operations/{id}`) and packs metadata and response of its own types, which
its clients unpack by type name (`google.cloud.aiplatform.{version}.{Type}`).
Uploads and dataset updates are explaind's operations (builds, store/operations.py)
seen through this view; endpoint changes and deletes are recorded here
(store/vertex_operations.py). Both gRPC (google.longrunning.Operations, for
Vertex names) and the REST port read operations through `VertexOperations`.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import uuid

from google.longrunning import operations_pb2
from google.protobuf import any_pb2, empty_pb2, json_format, timestamp_pb2
from google.protobuf.message import Message
from google.rpc import status_pb2

from explaind.v1 import model_service_pb2 as explaind_models
from explaind.vertex.v1 import endpoint_service_pb2 as es
from explaind.vertex.v1 import model_service_pb2 as ms

from ..api.status import status_of
from ..control.control_plane import ControlPlane
from ..errors import ExplaindError, NotFound
from ..store.vertex_operations import VertexOperationRecord, VertexOperationStore

log = logging.getLogger(__name__)

NAME = re.compile(r"^projects/(?P<project>[^/]{1,128})/locations/(?P<location>[^/]{1,128})"
                  r"(?:/(?P<collection>models|endpoints)/(?P<resource>[^/]{1,128}))?"
                  r"/operations/(?P<id>[A-Za-z0-9_-]{1,128})$")
EMPTY = "google.protobuf.Empty"
# kind -> (metadata type, response type): Vertex's names; our classes share their field numbers.
KINDS: dict[str, tuple[type, type]] = {
    "upload": (ms.UploadModelOperationMetadata, ms.UploadModelResponse),
    "update_dataset": (ms.UpdateExplanationDatasetOperationMetadata, ms.UpdateExplanationDatasetResponse),
    "delete": (ms.DeleteOperationMetadata, empty_pb2.Empty),
    "create_endpoint": (es.CreateEndpointOperationMetadata, es.Endpoint),
    "deploy": (es.DeployModelOperationMetadata, es.DeployModelResponse),
    "undeploy": (es.UndeployModelOperationMetadata, es.UndeployModelResponse),
}
ANSWER_WITHIN_SECONDS = 2.0      # an operation done by then is answered done (one poll fewer for the client)


def is_vertex_name(name: str) -> bool:
    return NAME.fullmatch(name) is not None


def type_url(message_type: type, version: str) -> str:
    full = message_type.DESCRIPTOR.full_name
    if full == EMPTY:
        return f"type.googleapis.com/{EMPTY}"
    return f"type.googleapis.com/google.cloud.aiplatform.{version}.{message_type.DESCRIPTOR.name}"


@dataclasses.dataclass
class VertexOperation:
    name: str
    version: str
    kind: str
    metadata: Message
    done: bool = False
    error: status_pb2.Status | None = None
    response: Message | None = None

    def to_proto(self) -> operations_pb2.Operation:
        meta_type, response_type = KINDS[self.kind]
        out = operations_pb2.Operation(name=self.name, done=self.done, metadata=any_pb2.Any(
            type_url=type_url(meta_type, self.version), value=self.metadata.SerializeToString()))
        if self.error is not None:
            out.error.CopyFrom(self.error)
        elif self.done:
            out.response.CopyFrom(any_pb2.Any(type_url=type_url(response_type, self.version),
                                              value=(self.response or response_type()).SerializeToString()))
        return out

    def to_json(self) -> dict:
        meta_type, response_type = KINDS[self.kind]
        out = {"name": self.name, "metadata": {"@type": type_url(meta_type, self.version),
                                               **json_format.MessageToDict(self.metadata)}}
        if self.done:
            out["done"] = True
            if self.error is not None:
                out["error"] = json_format.MessageToDict(self.error)
            elif response_type is empty_pb2.Empty:
                out["response"] = {"@type": type_url(response_type, self.version), "value": {}}
            else:
                out["response"] = {"@type": type_url(response_type, self.version),
                                   **json_format.MessageToDict(self.response or response_type())}
        return out

    def to_record(self) -> dict:
        """What the store keeps of an operation explaind's own records do not hold."""
        return {"done": self.done, "metadata": json_format.MessageToDict(self.metadata),
                "error": json_format.MessageToDict(self.error) if self.error is not None else None,
                "response": json_format.MessageToDict(self.response) if self.response is not None else None}

    @classmethod
    def from_record(cls, record: VertexOperationRecord) -> "VertexOperation":
        meta_type, response_type = KINDS[record.kind]
        d = record.operation
        return cls(record.name, record.version, record.kind,
                   json_format.ParseDict(d["metadata"], meta_type(), ignore_unknown_fields=True), d["done"],
                   json_format.ParseDict(d["error"], status_pb2.Status()) if d.get("error") else None,
                   json_format.ParseDict(d["response"], response_type(), ignore_unknown_fields=True)
                   if d.get("response") is not None else None)


class VertexOperations:
    def __init__(self, control: ControlPlane, store: VertexOperationStore):
        self.control = control
        self.store = store
        self._tasks: set[asyncio.Task] = set()

    # --- starting ---
    async def track_explaind(self, kind: str, version: str, name_prefix: str,
                             operation: operations_pb2.Operation) -> VertexOperation:
        """An explaind operation (an upload or a dataset update) under Vertex's name."""
        op_id = operation.name.rpartition("/")[2]
        record = VertexOperationRecord(op_id, version, f"{name_prefix}/operations/{op_id}", kind)
        await asyncio.to_thread(self.store.put, record)
        return self._from_explaind(record, operation)

    async def done(self, kind: str, version: str, name_prefix: str, response) -> VertexOperation:
        """An operation whose work is already done (endpoint changes take moments, as Vertex's)."""
        async def work():
            return response
        return await self.run(kind, version, name_prefix, work())

    async def run(self, kind: str, version: str, name_prefix: str, work) -> VertexOperation:
        """Runs `work` (an awaitable returning the response) as an operation. An error within the
        first ANSWER_WITHIN_SECONDS is the call's own error (a bad request, as Vertex answers it);
        a later one ends the operation with it. Answered done when `work` ends by then."""
        op_id = uuid.uuid4().hex
        meta_type, _ = KINDS[kind]
        started = _now()
        view = VertexOperation(f"{name_prefix}/operations/{op_id}", version, kind,
                               meta_type(generic_metadata=ms.GenericOperationMetadata(create_time=started,
                                                                                      update_time=started)))
        task = asyncio.ensure_future(work)
        done, _ = await asyncio.wait({task}, timeout=ANSWER_WITHIN_SECONDS)
        if done:
            response = task.result()            # raises the request's own error
            self._finish(view, response, None)
            await asyncio.to_thread(self._save, op_id, view)
            return view
        await asyncio.to_thread(self._save, op_id, view)
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._later(op_id, view, t))
        return view

    def _later(self, op_id: str, view: VertexOperation, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        error = task.exception() if not task.cancelled() else None
        if task.cancelled():
            error = ExplaindError("the operation was cancelled (the server stopped)")
        response = None if error is not None else task.result()
        if error is not None and not isinstance(error, ExplaindError):
            log.error("operation %s failed", view.name, exc_info=error)
            error = ExplaindError(f"{type(error).__name__}: {error}")
        self._finish(view, response, status_of(error) if error is not None else None)
        asyncio.ensure_future(asyncio.to_thread(self._save, op_id, view))

    @staticmethod
    def _finish(view: VertexOperation, response, error) -> None:
        view.done = True
        view.response = response
        view.error = error
        view.metadata.generic_metadata.update_time.CopyFrom(_now())

    def _save(self, op_id: str, view: VertexOperation) -> None:
        self.store.put(VertexOperationRecord(op_id, view.version, view.name, view.kind, view.to_record()))

    # --- reading ---
    async def get(self, name: str, version: str = "") -> VertexOperation:
        """The operation named `name` (Vertex's name or explaind's operations/{id}); `version`: the
        one a REST path gives, for operations started through explaind's own API."""
        match = NAME.fullmatch(name)
        op_id = match.group("id") if match else name.partition("operations/")[2]
        record = await asyncio.to_thread(self.store.get, op_id) if op_id else None
        if record is not None and match and match.group("collection") \
                and f"/{match.group('collection')}/{match.group('resource')}/operations/" not in record.name:
            record, op_id = None, ""          # another resource's operation: not this one
        if record is not None and record.operation is not None:
            return VertexOperation.from_record(record)
        try:
            operation = await self.control.get_operation(f"operations/{op_id}")
        except NotFound:
            raise NotFound(f"operation {name[:300]} not found", field="name") from None
        if record is None:
            meta = _explaind_meta(operation)
            model = meta.model.rpartition("/")[2]
            if match and match.group("collection") and (match.group("collection"), match.group("resource")) \
                    != ("models", model):
                raise NotFound(f"operation {name[:300]} not found", field="name")
            full = (f"projects/{match.group('project')}/locations/{match.group('location')}/models/{model}"
                    f"/operations/{op_id}") if match else name
            record = VertexOperationRecord(op_id, version or "v1", full,
                                           "update_dataset" if meta.base_build else "upload")
        return self._from_explaind(record, operation)

    async def wait(self, name: str, timeout: float | None) -> VertexOperation:
        loop = asyncio.get_running_loop()
        end = None if timeout is None else loop.time() + timeout
        while True:
            view = await self.get(name)
            if view.done or (end is not None and loop.time() >= end):
                return view
            await asyncio.sleep(0.2 if end is None else min(0.2, max(0.0, end - loop.time())))

    async def cancel(self, name: str) -> None:
        view = await self.get(name)
        if view.kind in ("upload", "update_dataset"):
            await self.control.cancel_operation(_explaind_name(name))
        # endpoint changes and deletes finish in moments: nothing left to cancel

    async def delete(self, name: str) -> None:
        view = await self.get(name)
        op_id = view.name.rpartition("/")[2]
        if view.kind in ("upload", "update_dataset"):
            await self.control.delete_operation(f"operations/{op_id}")
        await asyncio.to_thread(self.store.delete, op_id)

    def _from_explaind(self, record: VertexOperationRecord, operation: operations_pb2.Operation) -> VertexOperation:
        meta = _explaind_meta(operation)
        meta_type, response_type = KINDS[record.kind]
        view = VertexOperation(record.name, record.version, record.kind, meta_type(
            generic_metadata=ms.GenericOperationMetadata(create_time=meta.create_time, update_time=meta.update_time)),
            done=operation.done)
        if operation.HasField("error"):
            view.error = operation.error
        elif operation.done and record.kind == "upload":
            model = record.name.rpartition("/operations/")[0]
            view.response = ms.UploadModelResponse(model=model, model_version_id="1")
        return view

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()


def _explaind_meta(operation: operations_pb2.Operation) -> explaind_models.UploadModelOperationMetadata:
    meta = explaind_models.UploadModelOperationMetadata()
    operation.metadata.Unpack(meta)
    return meta


def _explaind_name(name: str) -> str:
    match = NAME.fullmatch(name)
    return f"operations/{match.group('id')}" if match else name


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp
