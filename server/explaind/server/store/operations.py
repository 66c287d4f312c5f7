"""Operation records (google.longrunning.Operation) in the store.

operations/{id}.json holds the Operation itself plus what another replica
needs to watch or take over the build: the original request, the worker that
runs it and its last heartbeat. Only the worker that runs a build writes its
record; other writers leave markers beside it, so no write can undo another:
operations/cancelled/{id} asks the build to stop (CancelOperation, from any
replica); operations/deleted/{id} marks an operation forgotten by DeleteOperation.
"""
from __future__ import annotations

import dataclasses
import re
import time

from google.longrunning import operations_pb2

from explaind.v1 import model_service_pb2  # also registers the packed types for JSON

from ..errors import NotFound
from . import records
from .objects import ObjectStore

OPERATION_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")     # ours are uuid4 hex; nothing else reaches a key


@dataclasses.dataclass
class OperationRecord:
    operation: operations_pb2.Operation
    request: dict = dataclasses.field(default_factory=dict)   # UploadModelRequest as JSON
    worker: str = ""
    heartbeat: float = 0.0

    @property
    def op_id(self) -> str:
        return self.operation.name.split("/", 1)[1]

    def to_bytes(self) -> bytes:
        return records.dumps({
            "operation": records.message_to_dict(self.operation),
            "request": self.request,
            "worker": self.worker,
            "heartbeat": self.heartbeat,
        })

    @classmethod
    def from_bytes(cls, data: bytes) -> "OperationRecord":
        d = records.loads(data)
        return cls(
            operation=records.dict_to_message(d["operation"], operations_pb2.Operation()),
            request=d.get("request", {}),
            worker=d.get("worker", ""),
            heartbeat=d.get("heartbeat", 0.0),
        )


def model_of(operation: operations_pb2.Operation) -> str:
    """The model ('models/{id}') an upload or update operation builds; '' for any other operation."""
    meta = model_service_pb2.UploadModelOperationMetadata()
    if operation.metadata.Is(meta.DESCRIPTOR):
        operation.metadata.Unpack(meta)
    return meta.model


class OperationStore:
    def __init__(self, objects: ObjectStore):
        self.objects = objects
        # A done operation never changes again (it can only be deleted), so its record
        # is read once; every poll of every replica re-reads only the running ones.
        self._done: dict[str, OperationRecord] = {}

    def _key(self, op_id: str) -> str:
        return f"operations/{op_id}.json"

    def put(self, record: OperationRecord) -> None:
        record.heartbeat = time.time()
        self.objects.write(self._key(record.op_id), record.to_bytes())

    def get(self, op_id: str) -> OperationRecord | None:
        if self.objects.exists(self._tombstone(op_id)):
            return None
        data = self.objects.read(self._key(op_id))
        return OperationRecord.from_bytes(data) if data is not None else None

    def _tombstone(self, op_id: str) -> str:
        return f"operations/deleted/{op_id}"

    def _cancel_marker(self, op_id: str) -> str:
        return f"operations/cancelled/{op_id}"

    def request_cancel(self, op_id: str) -> None:
        """A marker, not a rewrite of the record: rewriting it could land after the
        build's own final write and turn a finished operation back into a running one."""
        self.objects.write(self._cancel_marker(op_id), b"")

    def cancel_requested(self, op_id: str) -> bool:
        return self.objects.exists(self._cancel_marker(op_id))

    def require(self, name: str) -> OperationRecord:
        op_id = operation_id(name)
        record = self.get(op_id) if op_id else None
        if record is None:
            raise NotFound(f"operation {name[:200]!r} not found", field="name")
        return record

    def list(self) -> list[OperationRecord]:
        deleted = set(self.objects.list("operations/deleted"))
        ids = []
        for name in self.objects.list("operations"):
            if not name.endswith(".json") or name.startswith("."):
                continue
            op_id = name[: -len(".json")]
            if op_id in deleted:
                self.objects.delete(self._key(op_id))   # written back by a build after its delete
            else:
                ids.append(op_id)
        for gone in self._done.keys() - set(ids):      # deleted, possibly by another replica
            del self._done[gone]
        out = []
        for op_id in ids:
            record = self._done.get(op_id) or self.get(op_id)
            if record is not None:
                if record.operation.done:
                    self._done[op_id] = record
                out.append(record)
        out.sort(key=lambda r: r.operation.name)
        return out

    def delete(self, op_id: str) -> None:
        """Forgets the operation. A tombstone, not just the removal: a build still
        running (here or on another replica) may write its record once more, and the
        tombstone keeps it forgotten whichever write lands last."""
        self._done.pop(op_id, None)
        self.objects.write(self._tombstone(op_id), b"")
        self.objects.delete(self._key(op_id))
        self.objects.delete(self._cancel_marker(op_id))


def operation_id(name: str) -> str:
    """'operations/abc' -> 'abc'; anything else -> ''."""
    prefix, _, op_id = name.partition("/")
    return op_id if prefix == "operations" and OPERATION_ID.fullmatch(op_id) else ""
