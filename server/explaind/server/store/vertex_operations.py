"""How Vertex clients see operations: one small record per operation started
through a Vertex surface, beside explaind's own operation records.

  vertex-operations/{id}.json   {"version": "v1" | "v1beta1", "name": Vertex's operation name,
                                 "kind": what it does, "operation": the whole operation (JSON)
                                 for those explaind's store does not hold (endpoints, deletes)}

Vertex's clients unpack an operation's metadata and response by type name, and
the REST client polls `/ui/{name}`, which carries no version: the record keeps
the version the operation was started with.
"""
from __future__ import annotations

import dataclasses

from . import records
from .objects import ObjectStore
from .operations import OPERATION_ID


@dataclasses.dataclass
class VertexOperationRecord:
    op_id: str
    version: str
    name: str
    kind: str
    operation: dict | None = None     # the Vertex view, when explaind's store holds no operation for it

    def to_bytes(self) -> bytes:
        return records.dumps({"version": self.version, "name": self.name, "kind": self.kind,
                              "operation": self.operation})


class VertexOperationStore:
    def __init__(self, objects: ObjectStore):
        self.objects = objects

    def put(self, record: VertexOperationRecord) -> None:
        self.objects.write(f"vertex-operations/{record.op_id}.json", record.to_bytes())

    def get(self, op_id: str) -> VertexOperationRecord | None:
        if not OPERATION_ID.fullmatch(op_id):
            return None
        data = self.objects.read(f"vertex-operations/{op_id}.json")
        if data is None:
            return None
        d = records.loads(data)
        return VertexOperationRecord(op_id, d["version"], d["name"], d["kind"], d.get("operation"))

    def delete(self, op_id: str) -> None:
        if OPERATION_ID.fullmatch(op_id):
            self.objects.delete(f"vertex-operations/{op_id}.json")
