"""Which model serves a call to a Vertex endpoint.

Three kinds of endpoint, looked up in this order:
1. endpoints created through Vertex's EndpointService, kept in the store
   (store/endpoints.py): a call names a deployed model, or the traffic split
   picks one at random, weighted, per call; the deployment's explanation spec
   lies beneath the call's own override;
2. endpoints the --vertex-endpoints mapping names (vertex/endpoints.py);
3. by default, an endpoint whose id is a model id serves that model.
A store endpoint wins where it and the others share an id (CreateEndpoint
refuses ids the mapping names; one that is a model id hides the default).

The store's endpoints are held in memory: every replica polls them (`poll`,
the store publishes) and the replica that changes one sees it at once
(`put`). A call to an endpoint this replica has not polled yet reads it from
the store before answering NOT_FOUND.
"""
from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import random

from google.protobuf import json_format

from explaind.v1 import explanation_pb2

from ..errors import FailedPrecondition, NotFound
from ..store.endpoints import EndpointRecord, EndpointStore
from .endpoints import ENDPOINT_NAME, EndpointMap, Target

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Deployment:
    model_id: str
    override: explanation_pb2.ExplanationSpecOverride | None
    model_display_name: str


class Routes:
    """One store endpoint's deployments and its traffic split, ready for each call."""

    def __init__(self, record: EndpointRecord):
        self.name = record.endpoint.name
        self.deployments: dict[str, Deployment] = {}
        for deployed in record.endpoint.deployed_models:
            override = record.overrides.get(deployed.id)
            self.deployments[deployed.id] = Deployment(
                deployed.model.rpartition("/")[2],
                json_format.ParseDict(override, explanation_pb2.ExplanationSpecOverride()) if override else None,
                record.model_display_names.get(deployed.id, ""))
        split = [(k, v) for k, v in sorted(record.endpoint.traffic_split.items()) if v > 0 and k in self.deployments]
        self.ids = [k for k, _ in split]
        self.cumulative = list(itertools.accumulate(v for _, v in split))

    def choose(self, deployed_model_id: str, name: str) -> tuple[str, Deployment]:
        if deployed_model_id:
            deployment = self.deployments.get(deployed_model_id)
            if deployment is None:
                raise NotFound(f"endpoint {name[:300]} has no deployed model {deployed_model_id[:200]!r} (it has "
                               f"{', '.join(sorted(self.deployments)) or 'none'})", field="deployed_model_id")
            return deployed_model_id, deployment
        if not self.ids:
            raise FailedPrecondition(f"endpoint {name[:300]} has no deployed model taking traffic: deploy one, or "
                                     "set its trafficSplit, or name a deployed_model_id", field="endpoint")
        chosen = self.ids[0] if len(self.ids) == 1 else \
            random.choices(self.ids, cum_weights=self.cumulative)[0]
        return chosen, self.deployments[chosen]


class Router:
    def __init__(self, endpoints: EndpointStore, mapping: EndpointMap):
        self.store = endpoints
        self.mapping = mapping
        self._routes: dict[str, Routes] = {}
        self._built: dict[str, tuple[EndpointRecord, Routes]] = {}     # the record each Routes was built from

    # --- what the store publishes ---
    def poll(self) -> None:
        """One listing of the store's endpoints (blocking); only rewritten ones are built again
        (the store hands back the same record object while an endpoint is unchanged)."""
        built = {}
        for endpoint_id, record in self.store.published().items():
            previous = self._built.get(endpoint_id)
            built[endpoint_id] = previous if previous is not None and previous[0] is record else \
                (record, Routes(record))
        self._built = built
        self._routes = {endpoint_id: routes for endpoint_id, (_, routes) in built.items()}

    def put(self, endpoint_id: str, record: EndpointRecord | None) -> None:
        """A change made on this replica: routed by at once."""
        routes = dict(self._routes)
        if record is None:
            routes.pop(endpoint_id, None)
        else:
            routes[endpoint_id] = Routes(record)
        self._routes = routes

    def has(self, endpoint_id: str) -> bool:
        return endpoint_id in self._routes

    # --- each call ---
    def resolve(self, name: str, deployed_model_id: str = "", field: str = "endpoint") -> Target:
        match = ENDPOINT_NAME.fullmatch(name)
        routes = self._routes.get(match.group("endpoint")) if match else None
        if routes is None:
            return self.mapping.resolve(name, deployed_model_id, field)
        chosen, deployment = routes.choose(deployed_model_id, name)
        return Target(deployment.model_id, chosen, match.group("project"), match.group("location"),
                      deployment.override, deployment.model_display_name)

    async def lookup(self, name: str, deployed_model_id: str = "", field: str = "endpoint") -> Target:
        """resolve(), reading an endpoint this replica has not polled yet from the store."""
        try:
            return self.resolve(name, deployed_model_id, field)
        except NotFound:
            match = ENDPOINT_NAME.fullmatch(name)
            if match is None or self.has(match.group("endpoint")):
                raise
            record = await asyncio.to_thread(self.store.get, match.group("endpoint"))
            if record is None:
                raise
            self.put(match.group("endpoint"), record)
            return self.resolve(name, deployed_model_id, field)
