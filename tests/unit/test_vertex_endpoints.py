"""Vertex endpoint names resolved to explaind models: the default (endpoint id =
model id) and the vertex_endpoints mapping, from inline JSON, JSON or YAML files."""
from __future__ import annotations

import json

import pytest

from explaind.server.errors import InvalidArgument, NotFound
from explaind.server.vertex.endpoints import EndpointMap

NAME = "projects/my-project/locations/us-central1/endpoints/{}"
MAPPING = {"endpoints": {
    "1234567890": "tabular",
    "projects/p/locations/l/endpoints/42": {"deployedModels": {"111": "tabular-v1", "222": "tabular-v2"},
                                            "default": "222"},
    "solo": {"deployedModels": {"7": "only"}},
}}


def test_by_default_the_endpoint_id_is_the_model_id():
    target = EndpointMap().resolve(NAME.format("tabular"))
    assert (target.model_id, target.deployed_model_id) == ("tabular", "tabular")
    assert target.model_name == "projects/my-project/locations/us-central1/models/tabular"
    assert EndpointMap().resolve(NAME.format("tabular"), "tabular").model_id == "tabular"
    with pytest.raises(NotFound) as error:
        EndpointMap().resolve(NAME.format("tabular"), "999")
    assert error.value.field == "deployed_model_id"
    with pytest.raises(NotFound) as error:      # Vertex's numeric ids are no model ids
        EndpointMap().resolve(NAME.format("1234567890"))
    assert error.value.field == "endpoint" and "vertex_endpoints" in error.value.message


@pytest.mark.parametrize("form", ["inline", "json", "yaml"])
def test_a_mapping_points_endpoints_at_models(tmp_path, form):
    if form == "inline":
        setting = json.dumps(MAPPING)
    elif form == "json":
        setting = str(tmp_path / "endpoints.json")
        (tmp_path / "endpoints.json").write_text(json.dumps(MAPPING))
    else:
        import yaml
        setting = str(tmp_path / "endpoints.yaml")
        (tmp_path / "endpoints.yaml").write_text(yaml.safe_dump(MAPPING))
    endpoints = EndpointMap.from_setting(setting)
    assert endpoints.resolve(NAME.format("1234567890")).model_id == "tabular"
    full = "projects/p/locations/l/endpoints/42"
    assert (endpoints.resolve(full).model_id, endpoints.resolve(full).deployed_model_id) == ("tabular-v2", "222")
    assert endpoints.resolve(full, "111").model_id == "tabular-v1"
    with pytest.raises(NotFound):
        endpoints.resolve(full, "333")
    with pytest.raises(NotFound):       # a full name maps only there: elsewhere 42 is no model id
        endpoints.resolve("projects/other/locations/l/endpoints/42")
    assert endpoints.resolve(NAME.format("solo")).model_id == "only"
    assert endpoints.resolve(NAME.format("unmapped")).model_id == "unmapped"


def test_yaml_reads_numeric_deployed_model_ids(tmp_path):
    (tmp_path / "e.yml").write_text("endpoints:\n  '9':\n    deployedModels:\n      111: a\n      222: b\n"
                                    "    default: 222\n")
    assert EndpointMap.from_setting(str(tmp_path / "e.yml")).resolve(NAME.format("9")).model_id == "b"


@pytest.mark.parametrize("name", [
    "", "endpoints/e", "projects/p/locations/l/endpoints/", "projects/p/locations/l/endpoints/a/b",
    "projects//locations/l/endpoints/e", "projects/p/locations/l/models/e", "projects/p/locations/l/endpoints/" + "e" * 200,
    "projects/p/locations/l/endpoints/e\n", "projects/../locations/l/endpoints/e",
])
def test_names_that_are_no_endpoint_are_invalid(name):
    with pytest.raises(InvalidArgument) as error:
        EndpointMap().resolve(name)
    assert error.value.field == "endpoint"


@pytest.mark.parametrize("mapping", [
    [], {"endpoints": []}, {"endpoints": {}, "extra": 1}, {"endpoints": {"e": "Not A Model Id"}},
    {"endpoints": {"e": {"deployedModels": {}}}},
    {"endpoints": {"e": {"deployedModels": {"1": "a", "2": "b"}}}},          # several, no default
    {"endpoints": {"e": {"deployedModels": {"1": "a"}, "default": "2"}}},
    {"endpoints": {"e": {"deployedModels": {"1": "a"}, "traffic": {}}}},
    {"endpoints": {"e/../x": "a"}}, {"endpoints": {"e": {"deployedModels": {"bad id!": "a"}}}},
    {"endpoints": {"e": 5}},
])
def test_a_bad_mapping_stops_the_daemon_with_a_reason(mapping):
    with pytest.raises(ValueError):
        EndpointMap.from_setting(json.dumps(mapping) if isinstance(mapping, dict) else "{" + json.dumps(mapping))


def test_hostile_mapping_files(tmp_path):
    big = tmp_path / "big.json"
    big.write_text(" " * (1 << 21))
    with pytest.raises(ValueError, match="larger"):
        EndpointMap.from_setting(str(big))
    with pytest.raises(OSError):
        EndpointMap.from_setting(str(tmp_path / "missing.json"))
    (tmp_path / "bad.yaml").write_text("endpoints: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(Exception) as error:         # safe_load refuses to build objects
        EndpointMap.from_setting(str(tmp_path / "bad.yaml"))
    assert "python/object" in str(error.value)
