"""Vertex endpoints (and their deployed models) in the store, beside the models.

Layout under the store root:
  endpoints/{id}/endpoint.json   the endpoint: an explaind.vertex.v1.Endpoint whose name is
                                 "endpoints/{id}" and whose deployments name "models/{id}"
  endpoints/{id}/lock            held while one call changes the endpoint (deploy, undeploy,
                                 update): read-modify-write of endpoint.json, one at a time
                                 across replicas; a lock older than LOCK_STALE_SECONDS was left
                                 by a replica that died mid-change and is taken over
Every replica polls `published()` (each record re-read only when rewritten) and
routes Explain and Predict by it; like the models' source, nothing here knows who
serves what.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time

from explaind.vertex.v1 import endpoint_service_pb2

from ..errors import Aborted, AlreadyExists, NotFound
from . import records
from ..model_ids import is_stored_model_id
from .objects import KeyExists, ObjectStore

RECORD = "endpoint.json"
LOCK = "lock"
LOCK_STALE_SECONDS = 60.0
log = logging.getLogger(__name__)


@dataclasses.dataclass
class EndpointRecord:
    endpoint: endpoint_service_pb2.Endpoint
    # deployed model id -> the model's display name when it was deployed (answers carry it)
    model_display_names: dict[str, str] = dataclasses.field(default_factory=dict)
    # deployed model id -> the ExplanationSpecOverride (JSON) its explanation spec amounts to
    overrides: dict[str, dict] = dataclasses.field(default_factory=dict)

    @property
    def endpoint_id(self) -> str:
        return self.endpoint.name.split("/", 1)[1]

    def deployment(self, deployed_model_id: str) -> endpoint_service_pb2.DeployedModel | None:
        for deployed in self.endpoint.deployed_models:
            if deployed.id == deployed_model_id:
                return deployed
        return None

    def to_bytes(self) -> bytes:
        return records.dumps({"endpoint": records.message_to_dict(self.endpoint),
                              "model_display_names": self.model_display_names, "overrides": self.overrides})

    @classmethod
    def from_bytes(cls, data: bytes) -> "EndpointRecord":
        d = records.loads(data)
        return cls(records.dict_to_message(d["endpoint"], endpoint_service_pb2.Endpoint()),
                   dict(d.get("model_display_names", {})), dict(d.get("overrides", {})))


class EndpointStore:
    def __init__(self, objects: ObjectStore):
        self.objects = objects
        self._published: dict[str, tuple[tuple, EndpointRecord]] = {}

    def _key(self, endpoint_id: str, name: str = RECORD) -> str:
        return f"endpoints/{endpoint_id}/{name}"

    def create(self, record: EndpointRecord) -> None:
        try:
            self.objects.create(self._key(record.endpoint_id), record.to_bytes())
        except KeyExists:
            raise AlreadyExists(f"endpoint {record.endpoint_id!r} already exists", field="endpoint_id") from None

    def get(self, endpoint_id: str) -> EndpointRecord | None:
        if not is_stored_model_id(endpoint_id):    # keys are built from it
            return None
        data = self.objects.read(self._key(endpoint_id))
        return EndpointRecord.from_bytes(data) if data is not None else None

    def require(self, endpoint_id: str, name: str, field: str = "name") -> EndpointRecord:
        record = self.get(endpoint_id)
        if record is None:
            raise NotFound(f"endpoint {name[:300]} not found", field=field)
        return record

    def write(self, record: EndpointRecord) -> None:
        """Replaces the record: call it holding the endpoint's lock."""
        self.objects.write(self._key(record.endpoint_id), record.to_bytes())

    def delete(self, endpoint_id: str) -> None:
        self.objects.delete(self._key(endpoint_id))
        self.objects.delete_prefix(f"endpoints/{endpoint_id}")

    def list_ids(self) -> list[str]:
        return sorted(name for name in self.objects.list("endpoints") if not name.startswith("."))

    def published(self) -> dict[str, EndpointRecord]:
        """endpoint id -> record, of every endpoint in the store (what replicas route by)."""
        out = {}
        for key, version in self.objects.versions("endpoints").items():
            parts = key.split("/")
            if len(parts) != 3 or parts[2] != RECORD:
                continue
            cached = self._published.get(parts[1])
            if cached is None or cached[0] != version:
                record = self.get(parts[1])
                if record is None:
                    continue
                cached = (version, record)
                self._published[parts[1]] = cached
            out[parts[1]] = cached[1]
        for gone in self._published.keys() - out.keys():
            del self._published[gone]
        return out

    @contextlib.contextmanager
    def lock(self, endpoint_id: str):
        """Holds the endpoint's lock across replicas for one read-modify-write; ABORTED while
        another call holds it (the caller retries, as Vertex's clients do on ABORTED)."""
        key = self._key(endpoint_id, LOCK)
        stamp = json.dumps({"time": time.time()}).encode()
        try:
            self.objects.create(key, stamp)
        except KeyExists:
            if not self._stale(key):
                raise Aborted(f"endpoint {endpoint_id!r} is being changed by another call; retry",
                              field="endpoint") from None
            log.warning("endpoint lock left by a stopped call taken over", extra={"endpoint": endpoint_id})
            self.objects.write(key, stamp)
        try:
            yield
        finally:
            self.objects.delete(key)

    def _stale(self, key: str) -> bool:
        data = self.objects.read(key)
        try:
            return data is None or time.time() - float(json.loads(data)["time"]) > LOCK_STALE_SECONDS
        except (ValueError, KeyError, TypeError):
            return True
