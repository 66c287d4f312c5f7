"""Vertex AI endpoint names -> explaind models.

A Vertex client names `projects/{project}/locations/{location}/endpoints/{id}`
and, optionally, a deployed model of that endpoint. By default the endpoint
id is the model id and the deployed model id is the model id too. The
setting `vertex_endpoints` (a JSON or YAML file, or inline JSON) maps other
endpoints, typically Vertex's numeric ones, onto models:

    {"endpoints": {
       "1234567890": "tabular",                              # one model
       "projects/p/locations/l/endpoints/42": {              # a full name matches only there
         "deployedModels": {"111": "tabular-v1", "222": "tabular-v2"},
         "default": "222"}}}                                 # when a request names none

Project and location are not checked otherwise: explaind has one namespace.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re

from ..errors import InvalidArgument, NotFound
from ..model_ids import is_new_model_id

SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
ENDPOINT_NAME = re.compile(rf"^projects/(?P<project>{SEGMENT})/locations/(?P<location>{SEGMENT})"
                           rf"/endpoints/(?P<endpoint>{SEGMENT})$")
ENDPOINT_ID = re.compile(rf"^{SEGMENT}$")
DEPLOYED_MODEL_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
MAX_MAPPING_BYTES = 1 << 20
MAX_ENDPOINTS = 10_000


@dataclasses.dataclass(frozen=True)
class Target:
    """What an endpoint name and deployed model id resolve to."""
    model_id: str
    deployed_model_id: str
    project: str
    location: str
    # An endpoint of the store (vertex/routing.py): its deployment's explanation spec as an
    # override beneath each call's own, and the model's display name for the answers.
    override: object = None
    model_display_name: str = ""

    @property
    def model_name(self) -> str:
        """Vertex's resource name of the model."""
        return f"projects/{self.project}/locations/{self.location}/models/{self.model_id}"


@dataclasses.dataclass(frozen=True)
class Endpoint:
    deployed_models: dict[str, str]     # deployed model id -> model id
    default: str                        # the deployed model id used when a request names none


class EndpointMap:
    def __init__(self, endpoints: dict[str, Endpoint] | None = None):
        self.endpoints = endpoints or {}

    @classmethod
    def from_setting(cls, setting: str) -> "EndpointMap":
        """The setting: empty (no mapping), inline JSON (starts with "{"), or a
        .json / .yaml / .yml file. A mapping that does not parse stops the daemon."""
        setting = setting.strip()
        if not setting:
            return cls()
        if setting.startswith("{"):
            text, source = setting, "vertex_endpoints"
        else:
            if os.path.getsize(setting) > MAX_MAPPING_BYTES:
                raise ValueError(f"vertex_endpoints: {setting} is larger than {MAX_MAPPING_BYTES} bytes")
            with open(setting, encoding="utf-8") as f:
                text, source = f.read(), setting
        if source.endswith((".yaml", ".yml")):
            import yaml
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
        return cls.parse(data, source)

    @classmethod
    def parse(cls, data, source: str = "vertex_endpoints") -> "EndpointMap":
        if not isinstance(data, dict) or set(data) != {"endpoints"} or not isinstance(data["endpoints"], dict):
            raise ValueError(f'{source}: expected {{"endpoints": {{endpoint: model or deployed models}}}}')
        if len(data["endpoints"]) > MAX_ENDPOINTS:
            raise ValueError(f"{source}: more than {MAX_ENDPOINTS} endpoints")
        return cls({str(key): _endpoint(str(key), value, source) for key, value in data["endpoints"].items()})

    def resolve(self, name: str, deployed_model_id: str = "", field: str = "endpoint") -> Target:
        match = ENDPOINT_NAME.fullmatch(name)
        if match is None:
            raise InvalidArgument(f"expected 'projects/{{project}}/locations/{{location}}/endpoints/{{id}}', "
                                  f"got {name[:200]!r}", field=field)
        project, location, endpoint_id = match.group("project", "location", "endpoint")
        endpoint = self.endpoints.get(name) or self.endpoints.get(endpoint_id)
        if endpoint is None:
            # The default: the endpoint id is the model id (and so is its one deployed model).
            if not is_new_model_id(endpoint_id):
                raise NotFound(f"endpoint {name} not found: {endpoint_id!r} is no model id and no mapping "
                               "names it (see the vertex_endpoints setting)", field=field)
            endpoint = Endpoint({endpoint_id: endpoint_id}, endpoint_id)
        chosen = deployed_model_id or endpoint.default
        model_id = endpoint.deployed_models.get(chosen)
        if model_id is None:
            raise NotFound(f"endpoint {name} has no deployed model {chosen[:200]!r} (it has "
                           f"{', '.join(sorted(endpoint.deployed_models))})", field="deployed_model_id")
        return Target(model_id, chosen, project, location)


def _endpoint(key: str, value, source: str) -> Endpoint:
    where = f"{source}: endpoint {key[:200]!r}"
    if not (ENDPOINT_ID.fullmatch(key) or ENDPOINT_NAME.fullmatch(key)):
        raise ValueError(f"{where}: expected an endpoint id or projects/*/locations/*/endpoints/* name")
    if isinstance(value, str):
        _check_model_id(value, where)
        return Endpoint({value: value}, value)
    if not isinstance(value, dict) or not set(value) <= {"deployedModels", "default"} \
            or not isinstance(value.get("deployedModels"), dict) or not value["deployedModels"]:
        raise ValueError(f'{where}: expected a model id or {{"deployedModels": {{id: model}}, "default": id}}')
    deployed = {}
    for deployed_id, model_id in value["deployedModels"].items():
        deployed_id = str(deployed_id)      # YAML reads 111 as a number
        if not DEPLOYED_MODEL_ID.fullmatch(deployed_id):
            raise ValueError(f"{where}: deployed model id {deployed_id[:200]!r} is not [A-Za-z0-9_-]{{1,128}}")
        _check_model_id(model_id, where)
        deployed[deployed_id] = model_id
    default = str(value.get("default", next(iter(deployed)) if len(deployed) == 1 else ""))
    if default not in deployed:
        raise ValueError(f'{where}: "default" must name one of its deployed models ({", ".join(sorted(deployed))})')
    return Endpoint(deployed, default)


def _check_model_id(model_id, where: str) -> None:
    if not is_new_model_id(model_id):
        raise ValueError(f"{where}: {str(model_id)[:200]!r} is not a model id")
