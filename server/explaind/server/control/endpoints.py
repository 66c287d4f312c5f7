"""The control plane of endpoints and their deployed models, for every surface
(Vertex's EndpointService today; batch prediction jobs can read the same records).

Records live in the store (store/endpoints.py) so every replica routes by the
same endpoints; a change is written under the endpoint's lock and reported to
`on_change` at once, so this replica routes by it before the call returns
(the others see it at their next poll). Blocking: surfaces call it on a thread.
"""
from __future__ import annotations

import random
import re
import time
from typing import Callable

from google.protobuf import json_format, timestamp_pb2

from explaind.v1 import model_pb2
from explaind.vertex.v1 import endpoint_service_pb2 as vertex

from ..errors import FailedPrecondition, InvalidArgument, NotFound
from ..store.endpoints import EndpointRecord, EndpointStore
from ..store.models import ModelStore
from .deployments import deployment_override

# Ours: digits (as Vertex picks them), or a name as a model id reads; the id is a store key.
NEW_ENDPOINT_ID = re.compile(r"^(?:[1-9][0-9]{0,18}|[a-z][a-z0-9_-]{0,62})$")
DEPLOYING = "0"                 # the traffic split's key for the model being deployed (Vertex's)
MAX_DEPLOYMENTS = 100
MAX_DISPLAY_NAME = 128
MAX_DESCRIPTION = 10_000
MAX_LABELS = 64
LABEL_KEY = re.compile(r"^[\w-]{1,63}$")
LABEL_VALUE = re.compile(r"^[\w-]{0,63}$")
UPDATABLE = {"display_name", "description", "labels", "traffic_split"}


class EndpointControl:
    def __init__(self, endpoints: EndpointStore, models: ModelStore, load_model: Callable[[str], object],
                 on_change: Callable[[str, EndpointRecord | None], None] = lambda endpoint_id, record: None):
        """`load_model(model id)`: loads it on this replica (a deployment serves before its operation
        ends); `on_change(endpoint id, record or None when deleted)`."""
        self.endpoints = endpoints
        self.models = models
        self.load_model = load_model
        self.on_change = on_change

    # --- endpoints ---
    def create(self, endpoint_id: str, endpoint: vertex.Endpoint, taken: Callable[[str], bool]) -> EndpointRecord:
        """`taken(id)`: the id is an endpoint by other means (the --vertex-endpoints mapping)."""
        if endpoint_id:
            if not NEW_ENDPOINT_ID.fullmatch(endpoint_id):
                raise InvalidArgument(f"{endpoint_id[:200]!r} is not an endpoint id: up to 19 digits not starting "
                                      "with 0, or a letter then up to 62 of [a-z0-9_-]", field="endpoint_id")
            if taken(endpoint_id):
                raise InvalidArgument(f"{endpoint_id!r} is named by the --vertex-endpoints mapping; pick another id",
                                      field="endpoint_id")
        else:
            endpoint_id = str(random.randrange(10 ** 18, 10 ** 19))
        if endpoint.deployed_models:
            raise InvalidArgument("deploy models with DeployModel", field="endpoint.deployed_models")
        if endpoint.traffic_split:
            raise InvalidArgument("trafficSplit must be empty while the endpoint has no deployed models",
                                  field="endpoint.traffic_split")
        _check_describing(endpoint, "endpoint")
        require_json(endpoint, "endpoint")
        now = _now()
        stored = vertex.Endpoint()
        stored.CopyFrom(endpoint)
        stored.name = f"endpoints/{endpoint_id}"
        stored.create_time.CopyFrom(now)
        stored.update_time.CopyFrom(now)
        stored.etag = _etag()
        record = EndpointRecord(stored)
        self.endpoints.create(record)
        self.on_change(endpoint_id, record)
        return record

    def get(self, endpoint_id: str, name: str) -> EndpointRecord:
        return self.endpoints.require(endpoint_id, name)

    def list(self) -> list[EndpointRecord]:
        return [r for r in (self.endpoints.get(i) for i in self.endpoints.list_ids()) if r is not None]

    def update(self, endpoint_id: str, name: str, endpoint: vertex.Endpoint, paths: list[str]) -> EndpointRecord:
        if not paths:
            raise InvalidArgument(f"name the fields to change: {', '.join(sorted(UPDATABLE))}", field="update_mask")
        for path in paths:
            if path not in UPDATABLE:
                raise InvalidArgument(f"{path[:100]!r} cannot be updated; use {', '.join(sorted(UPDATABLE))}",
                                      field="update_mask")
        _check_describing(endpoint, "endpoint")
        require_json(endpoint, "endpoint")
        with self.endpoints.lock(endpoint_id):
            record = self.endpoints.require(endpoint_id, name)
            stored = record.endpoint
            for path in paths:
                if path == "traffic_split":
                    split = _checked_split(dict(endpoint.traffic_split), {d.id for d in stored.deployed_models},
                                           "endpoint.traffic_split")
                    stored.ClearField("traffic_split")
                    stored.traffic_split.update(split)
                elif path == "labels":
                    stored.ClearField("labels")
                    stored.labels.update(endpoint.labels)
                else:
                    setattr(stored, path, getattr(endpoint, path))
            self._rewrite(record)
        return record

    def delete(self, endpoint_id: str, name: str) -> None:
        with self.endpoints.lock(endpoint_id):
            record = self.endpoints.require(endpoint_id, name)
            if record.endpoint.deployed_models:
                raise FailedPrecondition(f"endpoint {name[:300]} has deployed models "
                                         f"({', '.join(d.id for d in record.endpoint.deployed_models)}); "
                                         "undeploy them first", field="name")
            self.endpoints.delete(endpoint_id)
        self.on_change(endpoint_id, None)

    # --- deployments ---
    def deploy(self, endpoint_id: str, name: str, deployed: vertex.DeployedModel, model_id: str,
               traffic_split: dict[str, int]) -> tuple[EndpointRecord, vertex.DeployedModel]:
        """Checks the model and the spec, loads the model on this replica, then records the deployment."""
        self.endpoints.require(endpoint_id, name, field="endpoint")
        model = self.models.get(model_id)
        if model is None:
            raise NotFound(f"model {deployed.model[:300]} not found", field="deployed_model.model")
        if model.model.state != model_pb2.Model.READY:
            raise FailedPrecondition(f"model {deployed.model[:300]} is {model_pb2.Model.State.Name(model.model.state)}"
                                     f" (operation {model.operation}); deploy it once its upload is done",
                                     field="deployed_model.model")
        if deployed.id:
            raise InvalidArgument("the deployed model id is picked by the server", field="deployed_model.id")
        if len(deployed.display_name) > MAX_DISPLAY_NAME:
            raise InvalidArgument(f"at most {MAX_DISPLAY_NAME} characters", field="deployed_model.display_name")
        require_json(deployed, "deployed_model")
        override = deployment_override(deployed.explanation_spec, model.model.explanation_spec)   # before any load
        try:
            self.load_model(model_id)
        except Exception as e:  # noqa: BLE001 - the deployment would not serve: say why
            raise FailedPrecondition(f"model {deployed.model[:300]} failed to load: {type(e).__name__}: {e}",
                                     field="deployed_model.model") from None
        with self.endpoints.lock(endpoint_id):
            record = self.endpoints.require(endpoint_id, name, field="endpoint")
            stored = record.endpoint
            if len(stored.deployed_models) >= MAX_DEPLOYMENTS:
                raise FailedPrecondition(f"endpoint {name[:300]} has {MAX_DEPLOYMENTS} deployed models already",
                                         field="endpoint")
            new = stored.deployed_models.add()
            new.CopyFrom(deployed)
            new.id = _new_deployed_id({d.id for d in stored.deployed_models})
            new.model = f"models/{model_id}"
            new.model_version_id = "1"
            new.create_time.CopyFrom(_now())
            if not new.display_name:
                new.display_name = model.model.display_name
            ids = {d.id for d in stored.deployed_models}
            if traffic_split:
                split = {(new.id if k == DEPLOYING else k): v for k, v in traffic_split.items()}
                split = _checked_split(split, ids, "traffic_split")
            elif not stored.traffic_split:
                split = {new.id: 100}          # the first deployment takes every call, as Vertex does
            else:
                split = dict(stored.traffic_split)
            stored.ClearField("traffic_split")
            stored.traffic_split.update({k: v for k, v in split.items() if v})
            record.model_display_names[new.id] = model.model.display_name
            if override is not None:
                record.overrides[new.id] = json_format.MessageToDict(override)
            self._rewrite(record)
        return record, new

    def undeploy(self, endpoint_id: str, name: str, deployed_model_id: str,
                 traffic_split: dict[str, int]) -> EndpointRecord:
        with self.endpoints.lock(endpoint_id):
            record = self.endpoints.require(endpoint_id, name, field="endpoint")
            stored = record.endpoint
            if record.deployment(deployed_model_id) is None:
                raise NotFound(f"endpoint {name[:300]} has no deployed model {deployed_model_id[:200]!r}",
                               field="deployed_model_id")
            remaining = [d for d in stored.deployed_models if d.id != deployed_model_id]
            ids = {d.id for d in remaining}
            if traffic_split:
                if traffic_split.get(deployed_model_id):
                    raise InvalidArgument(f"trafficSplit gives {deployed_model_id} traffic while undeploying it",
                                          field="traffic_split")
                split = _checked_split({k: v for k, v in traffic_split.items() if k != deployed_model_id}, ids,
                                       "traffic_split")
            else:
                split = _without(dict(stored.traffic_split), deployed_model_id)
            del stored.deployed_models[:]
            stored.deployed_models.extend(remaining)
            stored.ClearField("traffic_split")
            stored.traffic_split.update({k: v for k, v in split.items() if v})
            record.model_display_names.pop(deployed_model_id, None)
            record.overrides.pop(deployed_model_id, None)
            self._rewrite(record)
        return record

    def deployments_of(self, model_id: str) -> list[tuple[str, str]]:
        """(endpoint id, deployed model id) of every deployment of the model, read from the store now."""
        return [(record.endpoint_id, d.id) for record in self.list() for d in record.endpoint.deployed_models
                if d.model == f"models/{model_id}"]

    def _rewrite(self, record: EndpointRecord) -> None:
        record.endpoint.update_time.CopyFrom(_now())
        record.endpoint.etag = _etag()
        self.endpoints.write(record)
        self.on_change(record.endpoint_id, record)


def _checked_split(split: dict[str, int], deployed_ids: set[str], field: str) -> dict[str, int]:
    """Vertex's rule: every key a deployed model, values 0..100 summing to 100 (empty only when none is deployed)."""
    unknown = sorted(set(split) - deployed_ids)
    if unknown:
        raise InvalidArgument(f"trafficSplit names {', '.join(k[:64] for k in unknown[:5])}, not deployed models "
                              f"of the endpoint ({', '.join(sorted(deployed_ids)) or 'none'})", field=field)
    if any(not 0 <= v <= 100 for v in split.values()):
        raise InvalidArgument("trafficSplit values are percentages, 0 to 100", field=field)
    total = sum(split.values())
    if total != 100 and not (total == 0 and not deployed_ids):
        raise InvalidArgument(f"trafficSplit must sum to 100, got {total}", field=field)
    return split


def _without(split: dict[str, int], deployed_model_id: str) -> dict[str, int]:
    """The split without one deployment, its share handed to the others in proportion (as the SDK computes)."""
    share = split.pop(deployed_model_id, 0)
    if not share or not split:
        return split
    left = sum(split.values())
    if left == 0:
        return {}
    out = {k: v * 100 // left for k, v in split.items()}
    for k in list(out)[:100 - sum(out.values())]:
        out[k] += 1
    return out


def _check_describing(endpoint: vertex.Endpoint, field: str) -> None:
    if len(endpoint.display_name) > MAX_DISPLAY_NAME:
        raise InvalidArgument(f"at most {MAX_DISPLAY_NAME} characters", field=f"{field}.display_name")
    if len(endpoint.description) > MAX_DESCRIPTION:
        raise InvalidArgument(f"at most {MAX_DESCRIPTION} characters", field=f"{field}.description")
    check_labels(endpoint.labels, f"{field}.labels")


def require_json(message, field: str) -> dict:
    """The message as JSON (how the store keeps it): INVALID_ARGUMENT naming `field` when it has
    no JSON form (an enum number no name has, a NaN in a Value...), never an error at the write."""
    try:
        return json_format.MessageToDict(message)
    except (json_format.SerializeToJsonError, ValueError, TypeError) as e:
        raise InvalidArgument(f"cannot be read as JSON: {str(e)[:200]}", field=field) from None


def check_labels(labels, field: str) -> None:
    if len(labels) > MAX_LABELS:
        raise InvalidArgument(f"at most {MAX_LABELS} labels, got {len(labels)}", field=field)
    for key, value in labels.items():
        if not LABEL_KEY.fullmatch(key) or not LABEL_VALUE.fullmatch(value):
            raise InvalidArgument(f"label {key[:64]!r}: keys are 1 to 63 and values 0 to 63 letters, digits, "
                                  "_ or -", field=f"{field}[{key[:64]}]")


def _new_deployed_id(taken: set[str]) -> str:
    while True:
        candidate = str(random.randrange(10 ** 18, 10 ** 19))
        if candidate not in taken:
            return candidate


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(time.time_ns())
    return stamp


def _etag() -> str:
    return f"{random.getrandbits(64):016x}"
