"""The rules behind Vertex's resources, without a server: list filters and page
tokens (hostile ones included), traffic splits, a deployment's explanation spec
against its model's, the endpoint records in a store, and the router's weighted
choice (checked statistically)."""
from __future__ import annotations

import math

import pytest
from google.protobuf import json_format

from explaind.v1 import explanation_pb2, model_pb2
from explaind.vertex.v1 import endpoint_service_pb2 as es
from explaind.server.control import resource_filter
from explaind.server.control.deployments import deployment_override, merged
from explaind.server.control.endpoints import EndpointControl
from explaind.server.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from explaind.server.store.endpoints import EndpointStore
from explaind.server.store.models import ModelRecord, ModelStore
from explaind.server.store.objects import ObjectStore
from explaind.server.vertex import names
from explaind.server.vertex.endpoints import EndpointMap
from explaind.server.vertex.routing import Router

L = resource_filter.Listed


def _items():
    return [L("flowers", {"team": "vision", "tier": "gold"}, 3.0, 9.0), L("pets", {"team": "tabular"}, 1.0, 5.0),
            L("flowers-v2", {}, 2.0, 7.0)]


@pytest.mark.parametrize("text,expected", [
    ("", ["flowers", "pets", "flowers-v2"]),
    ('display_name="flowers"', ["flowers"]),
    ('displayName = flowers', ["flowers"]),
    ('display_name != "flowers"', ["pets", "flowers-v2"]),
    ('display_name:"flowers*"', ["flowers", "flowers-v2"]),
    ("labels.team:*", ["flowers", "pets"]),
    ('labels.team="vision" AND labels.tier="gold"', ["flowers"]),
    ('labels.team="vision" OR display_name="pets"', ["flowers", "pets"]),
    ('NOT labels.team:*', ["flowers-v2"]),
    ('-labels.team:* OR (display_name="pets" AND labels.team="tabular")', ["pets", "flowers-v2"]),
])
def test_filters_read_vertex_s_subset(text, expected):
    wanted = resource_filter.parse_filter(text)
    assert [i.display_name for i in _items() if wanted(i)] == expected


@pytest.mark.parametrize("text", ['name="x"', "display_name", 'display_name="x" AND', "(display_name=x", "((((" * 30,
                                  'labels.UPPER="x"', "display_name ~ x", "x" * 3000, 'display_name="a" )'])
def test_hostile_filters_are_invalid_argument_naming_filter(text):
    with pytest.raises(InvalidArgument) as error:
        resource_filter.parse_filter(text)
    assert error.value.field == "filter"


def test_order_by_and_pages():
    pairs = [(i, i.display_name) for i in _items()]
    resource_filter.parse_order("create_time desc")(pairs)
    assert [name for _, name in pairs] == ["flowers", "flowers-v2", "pets"]
    resource_filter.parse_order("display_name")(pairs)
    assert [name for _, name in pairs] == ["flowers", "flowers-v2", "pets"]
    with pytest.raises(InvalidArgument) as error:
        resource_filter.parse_order("name")
    assert error.value.field == "order_by"
    items = list(range(2500))
    page, token = resource_filter.page_of(items, 10**9, "")          # a huge page is Vertex's maximum
    assert page == items[:resource_filter.MAX_PAGE] and token
    seen = list(page)
    while token:
        page, token = resource_filter.page_of(items, 10**9, token)
        seen += page
    assert seen == items
    for bad in ("!!!", "b2Zmc2V0Oi0x", "bm90LWFuLW9mZnNldA==", "A" * 5000):   # junk, "offset:-1", "not-an-offset"
        with pytest.raises(InvalidArgument) as error:
            resource_filter.page_of(items, 10, bad)
        assert error.value.field == "page_token"
    with pytest.raises(InvalidArgument):
        resource_filter.page_of(items, -1, "")


@pytest.mark.parametrize("name", ["projects/p/locations/l/models/../x", "projects/p/locations/l/models/",
                                  "projects/p/locations/l/models/m@2", "models/m", "projects/p/locations/l/models/m/x",
                                  "projects/p/locations/l/endpoints/e", "projects/" + "p" * 300 + "/locations/l/models/m",
                                  "projects/p/locations/l/models/m\x00"])
def test_hostile_model_names_are_invalid_argument(name):
    with pytest.raises(InvalidArgument):
        names.resource(name, "models")


def test_model_versions_one_and_default_name_the_model():
    assert names.resource("projects/p/locations/l/models/m@1", "models")[1] == "m"
    assert names.resource("projects/p/locations/l/models/m@default", "models")[1] == "m"


def _ig_spec(steps=20) -> explanation_pb2.ExplanationSpec:
    return json_format.ParseDict({"parameters": {"integratedGradientsAttribution": {"stepCount": steps}, "topK": 1},
                                  "metadata": {"inputs": {"x": {"inputTensorName": "x"}},
                                               "outputs": {"y": {"outputTensorName": "y"}}}},
                                 explanation_pb2.ExplanationSpec())


def test_a_deployment_spec_becomes_an_override_and_a_call_s_own_wins():
    deployment = json_format.ParseDict({"parameters": {"integratedGradientsAttribution": {"stepCount": 5}, "topK": 2},
                                        "metadata": {"inputs": {"x": {"inputTensorName": "x",
                                                                      "inputBaselines": [[1.0, 1.0]]}}}},
                                       explanation_pb2.ExplanationSpec())
    override = deployment_override(deployment, _ig_spec())
    assert json_format.MessageToDict(override) == {
        "parameters": {"integratedGradientsAttribution": {"stepCount": 5}, "topK": 2},
        "metadata": {"inputs": {"x": {"inputBaselines": [[1.0, 1.0]]}}}}
    call = json_format.ParseDict({"parameters": {"integratedGradientsAttribution": {"stepCount": 9}}},
                                 explanation_pb2.ExplanationSpecOverride())
    assert json_format.MessageToDict(merged(override, call)) == {
        "parameters": {"integratedGradientsAttribution": {"stepCount": 9}, "topK": 2},
        "metadata": {"inputs": {"x": {"inputBaselines": [[1.0, 1.0]]}}}}
    assert merged(None, call) is call
    assert deployment_override(explanation_pb2.ExplanationSpec(), _ig_spec()) is None
    assert deployment_override(_ig_spec(), _ig_spec()) is not None       # the model's own spec, repeated


@pytest.mark.parametrize("spec,field", [
    ({"parameters": {"xraiAttribution": {"stepCount": 5}}}, "deployed_model.explanation_spec.parameters.xrai_attribution"),
    ({"metadata": {"outputs": {"z": {"outputTensorName": "z"}}}}, "deployed_model.explanation_spec.metadata.outputs[z]"),
    ({"metadata": {"inputs": {"x": {"inputTensorName": "other"}}}},
     "deployed_model.explanation_spec.metadata.inputs[x].input_tensor_name"),
    ({"metadata": {"latentSpaceSource": "hidden"}}, "deployed_model.explanation_spec.metadata.latent_space_source"),
])
def test_a_deployment_cannot_change_what_needs_a_new_upload(spec, field):
    with pytest.raises(InvalidArgument) as error:
        deployment_override(json_format.ParseDict(spec, explanation_pb2.ExplanationSpec()), _ig_spec())
    assert error.value.field == field


def test_examples_deployments_change_only_neighbor_count():
    model = json_format.ParseDict({"parameters": {"examples": {"gcsSource": {"uris": ["gs://b/x.jsonl"]},
                                                               "neighborCount": 10}}}, explanation_pb2.ExplanationSpec())
    override = deployment_override(json_format.ParseDict({"parameters": {"examples": {"neighborCount": 3}}},
                                                         explanation_pb2.ExplanationSpec()), model)
    assert override.examples_override.neighbor_count == 3 and not override.HasField("parameters")
    with pytest.raises(InvalidArgument) as error:
        deployment_override(json_format.ParseDict({"parameters": {"examples": {"gcsSource": {"uris": ["gs://b/y"]}}}},
                                                  explanation_pb2.ExplanationSpec()), model)
    assert error.value.field == "deployed_model.explanation_spec.parameters.examples.gcs_source.uris"


@pytest.fixture
def control(tmp_path):
    objects = ObjectStore(str(tmp_path / "store"))
    models = ModelStore(objects)
    for model_id in ("a", "b"):
        models.publish(ModelRecord(model_pb2.Model(name=f"models/{model_id}", display_name=model_id.upper(),
                                                   state=model_pb2.Model.READY, explanation_spec=_ig_spec())))
    models.claim(ModelRecord(model_pb2.Model(name="models/building", state=model_pb2.Model.BUILDING)))
    loaded, changes = [], []
    return EndpointControl(EndpointStore(objects), models, loaded.append,
                           on_change=lambda i, r: changes.append(i)), loaded, changes


def _deployed(model_id: str) -> es.DeployedModel:
    return es.DeployedModel(model=f"models/{model_id}")


def test_deploy_split_undeploy_delete(control):
    control, loaded, changes = control
    record = control.create("", es.Endpoint(display_name="e"), lambda i: False)
    endpoint_id, name = record.endpoint_id, "projects/p/locations/l/endpoints/" + record.endpoint_id
    assert endpoint_id.isdigit() and changes == [endpoint_id]
    record, first = control.deploy(endpoint_id, name, _deployed("a"), "a", {})
    assert dict(record.endpoint.traffic_split) == {first.id: 100} and loaded == ["a"]
    assert first.display_name == "A" and record.model_display_names[first.id] == "A"
    for split, words in (({first.id: 50, "0": 40}, "sum to 100"), ({"9": 100}, "not deployed models"),
                         ({first.id: 120, "0": -20}, "0 to 100")):
        with pytest.raises(InvalidArgument) as error:
            control.deploy(endpoint_id, name, _deployed("b"), "b", split)
        assert error.value.field == "traffic_split" and words in error.value.message and "trafficSplit" in str(error.value)
    record, second = control.deploy(endpoint_id, name, _deployed("b"), "b", {first.id: 70, "0": 30})
    assert dict(record.endpoint.traffic_split) == {first.id: 70, second.id: 30}
    assert sorted(control.deployments_of("a")) == [(endpoint_id, first.id)]
    with pytest.raises(FailedPrecondition):
        control.delete(endpoint_id, name)
    with pytest.raises(FailedPrecondition):
        control.deploy(endpoint_id, name, _deployed("building"), "building", {})
    with pytest.raises(NotFound):
        control.deploy(endpoint_id, name, _deployed("absent"), "absent", {})
    with pytest.raises(NotFound):
        control.undeploy(endpoint_id, name, "12345", {})
    record = control.undeploy(endpoint_id, name, first.id, {})
    assert dict(record.endpoint.traffic_split) == {second.id: 100}     # its share handed on
    record = control.update(endpoint_id, name, es.Endpoint(display_name="renamed", labels={"k": "v"}),
                            ["display_name", "labels"])
    assert record.endpoint.display_name == "renamed" and dict(record.endpoint.labels) == {"k": "v"}
    with pytest.raises(InvalidArgument):
        control.update(endpoint_id, name, es.Endpoint(), ["deployed_models"])
    control.undeploy(endpoint_id, name, second.id, {})
    control.delete(endpoint_id, name)
    assert control.endpoints.get(endpoint_id) is None and changes[-1] == endpoint_id


@pytest.mark.parametrize("endpoint_id", ["../x", "0123", "a" * 64, "Upper", "x/y", "1" * 20, "-a"])
def test_hostile_endpoint_ids_are_refused(control, endpoint_id):
    with pytest.raises(InvalidArgument) as error:
        control[0].create(endpoint_id, es.Endpoint(), lambda i: False)
    assert error.value.field == "endpoint_id"


def test_ids_the_mapping_names_and_taken_ids_are_refused(control):
    control = control[0]
    with pytest.raises(InvalidArgument):
        control.create("mapped", es.Endpoint(), lambda i: i == "mapped")
    control.create("mine", es.Endpoint(), lambda i: False)
    with pytest.raises(AlreadyExists):
        control.create("mine", es.Endpoint(), lambda i: False)


def test_labels_are_bounded(control):
    with pytest.raises(InvalidArgument):
        control[0].create("", es.Endpoint(labels={f"k{i}": "v" for i in range(65)}), lambda i: False)
    with pytest.raises(InvalidArgument):
        control[0].create("", es.Endpoint(labels={"bad key": "v"}), lambda i: False)


def test_the_lock_serialises_changes_and_a_stale_one_is_taken_over(control, monkeypatch):
    control = control[0]
    record = control.create("locked", es.Endpoint(), lambda i: False)
    with control.endpoints.lock(record.endpoint_id):
        with pytest.raises(Exception) as error:
            control.update("locked", "n", es.Endpoint(display_name="x"), ["display_name"])
        assert error.value.code.name == "ABORTED"
    control.endpoints.objects.write("endpoints/locked/lock", b'{"time": 0}')      # left by a dead replica
    assert control.update("locked", "n", es.Endpoint(display_name="x"), ["display_name"]).endpoint.display_name == "x"


def test_the_router_follows_the_split_and_prefers_store_endpoints(control):
    control = control[0]
    router = Router(control.endpoints, EndpointMap.parse({"endpoints": {"42": "b"}}))
    control.on_change = router.put
    record = control.create("a", es.Endpoint(), lambda i: False)        # "a" is also a model id
    record, first = control.deploy("a", "n", _deployed("b"), "b", {})
    record, second = control.deploy("a", "n", _deployed("a"), "a", {first.id: 80, "0": 20})
    counts = {first.id: 0, second.id: 0}
    n = 4000
    for _ in range(n):
        counts[router.resolve("projects/p/locations/l/endpoints/a").deployed_model_id] += 1
    spread = 4.5 * math.sqrt(n * 0.2 * 0.8)                     # a correct split fails ~1 in 150,000 runs
    assert abs(counts[second.id] - n * 0.2) <= spread, counts
    target = router.resolve("projects/p/locations/l/endpoints/a", second.id)
    assert (target.model_id, target.model_display_name) == ("a", "A")
    assert router.resolve("projects/p/locations/l/endpoints/42").model_id == "b"       # the mapping
    assert router.resolve("projects/p/locations/l/endpoints/b").model_id == "b"        # the default
    fresh = Router(control.endpoints, EndpointMap())
    fresh.poll()                                                     # another replica, after its poll
    assert fresh.resolve("projects/p/locations/l/endpoints/a", first.id).model_id == "b"
    control.undeploy("a", "n", first.id, {})
    control.undeploy("a", "n", second.id, {})
    with pytest.raises(FailedPrecondition):
        router.resolve("projects/p/locations/l/endpoints/a")


def test_messages_without_a_json_form_are_refused_before_the_store():
    """Found by fuzzing: a NaN in a baseline Value has no JSON form, and the store keeps JSON."""
    from explaind.server.control.endpoints import require_json
    from explaind.vertex.v1 import model_service_pb2 as ms

    request = ms.UploadModelRequest(parent="projects/p/locations/l")
    request.model.explanation_spec.metadata.inputs["x"].encoded_baselines.add().number_value = float("nan")
    with pytest.raises(InvalidArgument) as error:
        require_json(request, "model")
    assert error.value.field == "model"
    deployed = es.DeployedModel(model="models/a")
    deployed.explanation_spec.metadata.inputs["x"].input_baselines.add().number_value = float("inf")
    with pytest.raises(InvalidArgument) as error:
        require_json(deployed, "deployed_model")
    assert error.value.field == "deployed_model"


def test_the_latent_space_is_the_outputs_entry_when_latent_space_source_is_empty():
    """As Vertex reads its example-based notebooks' metadata."""
    from explaind.server.methods import latent_source

    def metadata(d):
        return json_format.ParseDict(d, explanation_pb2.ExplanationMetadata())
    assert latent_source(metadata({"outputs": {"embedding": {"outputTensorName": "dense_2"}}})) == "dense_2"
    assert latent_source(metadata({"outputs": {"embedding": {}}})) == "embedding"
    assert latent_source(metadata({"latentSpaceSource": "hidden", "outputs": {"e": {}}})) == "hidden"
    assert latent_source(metadata({"outputs": {"a": {}, "b": {}}})) == ""      # ambiguous: the signature decides
    assert latent_source(metadata({})) == ""
