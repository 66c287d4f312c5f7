"""Vertex resource names: projects/{project}/locations/{location}/{collection}/{id}.

explaind has one namespace: project and location are read, kept for the answer's
names, and not checked against anything.
"""
from __future__ import annotations

import dataclasses
import re

from ..errors import InvalidArgument

SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
PARENT = re.compile(rf"^projects/(?P<project>{SEGMENT})/locations/(?P<location>{SEGMENT})$")
RESOURCE = re.compile(rf"^projects/(?P<project>{SEGMENT})/locations/(?P<location>{SEGMENT})"
                      rf"/(?P<collection>models|endpoints)/(?P<id>{SEGMENT})(?:@(?P<version>[A-Za-z0-9_-]{{1,128}}))?$")
VERSIONS = ("1", "default")        # explaind keeps one version per model


@dataclasses.dataclass(frozen=True)
class Parent:
    project: str
    location: str

    @property
    def name(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    def model(self, model_id: str) -> str:
        return f"{self.name}/models/{model_id}"

    def endpoint(self, endpoint_id: str) -> str:
        return f"{self.name}/endpoints/{endpoint_id}"


def parent(name: str, field: str = "parent") -> Parent:
    match = PARENT.fullmatch(name)
    if match is None:
        raise InvalidArgument(f"expected 'projects/{{project}}/locations/{{location}}', got {name[:200]!r}",
                              field=field)
    return Parent(match.group("project"), match.group("location"))


def resource(name: str, collection: str, field: str = "name") -> tuple[Parent, str]:
    """(parent, id) of a model or endpoint name; a model's "@1" or "@default" version is accepted."""
    match = RESOURCE.fullmatch(name)
    if match is None or match.group("collection") != collection or \
            (match.group("version") and (collection != "models" or match.group("version") not in VERSIONS)):
        raise InvalidArgument(f"expected 'projects/{{project}}/locations/{{location}}/{collection}/{{id}}"
                              f"{'[@1]' if collection == 'models' else ''}', got {name[:200]!r}", field=field)
    return Parent(match.group("project"), match.group("location")), match.group("id")
