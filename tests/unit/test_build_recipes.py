"""Upload validation through the build recipes: one branch on the method, and
errors that name the request field, before any operation starts."""
import numpy as np
import pytest
from google.protobuf import json_format

from explaind.server.builds.recipes import AttributionRecipe, ExamplesRecipe, recipe_for
from explaind.server.errors import InvalidArgument
from explaind.v1 import model_pb2

EXAMPLES = "model.explanation_spec.parameters.examples"


def _model(tmp_path, examples: dict | None = None, artifact: str = "", attribution: dict | None = None):
    parameters = {"examples": examples} if examples is not None else attribution or {}
    return json_format.ParseDict({"artifactUri": artifact, "explanationSpec": {"parameters": parameters}},
                                 model_pb2.Model())


def _data(tmp_path):
    path = tmp_path / "e.npy"
    np.save(path, np.zeros((3, 4), np.float32))
    return str(path)


def _config():
    return {"config": {"dimensions": 4, "algorithmConfig": {"bruteForceConfig": {}}}}


@pytest.mark.parametrize("count, message", [(-1, "must be >= 0"), (1001, "must be <= 1000")])
def test_neighbor_count_out_of_range_names_its_field(tmp_path, count, message):
    model = _model(tmp_path, {"gcsSource": {"uris": [_data(tmp_path)]}, "neighborCount": count,
                              "nearestNeighborSearchConfig": _config()})
    with pytest.raises(InvalidArgument) as e:
        recipe_for(model, max_neighbor_count=1000)
    assert e.value.field == f"{EXAMPLES}.neighbor_count" and message in e.value.message


def test_examples_recipe_fills_the_default_neighbor_count_and_reads_the_config(tmp_path):
    model = _model(tmp_path, {"gcsSource": {"uris": [_data(tmp_path)]}, "nearestNeighborSearchConfig": _config()})
    recipe = recipe_for(model, max_neighbor_count=1000)
    assert isinstance(recipe, ExamplesRecipe)
    assert model.explanation_spec.parameters.examples.neighbor_count == 10
    assert (recipe.search_config.dimensions, recipe.search_config.algorithm) == (4, "brute_force")


def test_presets_errors_name_the_presets_field(tmp_path):
    from explaind.server.index.config import search_config_from_presets

    with pytest.raises(InvalidArgument) as e:
        search_config_from_presets("FASTEST", "TABULAR", 10, field=f"{EXAMPLES}.presets")
    assert e.value.field == f"{EXAMPLES}.presets.query"


def test_attribution_without_a_savedmodel_and_no_method_are_refused(tmp_path):
    with pytest.raises(InvalidArgument) as e:
        recipe_for(_model(tmp_path, attribution={"integratedGradientsAttribution": {"stepCount": 10}}), 1000)
    assert e.value.field == "model.artifact_uri"
    with pytest.raises(InvalidArgument) as e:
        recipe_for(_model(tmp_path), 1000)
    assert e.value.field == "model.explanation_spec.parameters"


def test_attribution_recipe_for_a_savedmodel_folder(tmp_path):
    (tmp_path / "saved_model.pb").write_bytes(b"")
    recipe = recipe_for(_model(tmp_path, artifact=str(tmp_path),
                               attribution={"sampledShapleyAttribution": {"pathCount": 5}}), 1000)
    assert isinstance(recipe, AttributionRecipe)


def test_attribution_metadata_and_ranges_are_refused_by_the_upload_itself(tmp_path):
    """What needs no model fails UploadModel at once, from the request's metadata or the file beside
    the model; what needs the model fails the upload's operation (tests/integration)."""
    import json

    (tmp_path / "saved_model.pb").write_bytes(b"")
    model = _model(tmp_path, artifact=str(tmp_path), attribution={"integratedGradientsAttribution": {"stepCount": 10}})
    json_format.ParseDict({"inputs": {"words": {"encoding": "COMBINED_EMBEDDING"}}}, model.explanation_spec.metadata)
    with pytest.raises(InvalidArgument) as e:
        recipe_for(model, 1000)
    assert e.value.field == "model.explanation_spec.metadata.inputs[words].encoded_tensor_name"
    (tmp_path / "explanation_metadata.json").write_text(json.dumps({"inputs": {"x": {"encoding": "bag_of_features"}}}))
    with pytest.raises(InvalidArgument) as e:
        recipe_for(_model(tmp_path, artifact=str(tmp_path), attribution={"integratedGradientsAttribution": {}}), 1000)
    assert e.value.field == "model.artifact_uri (explanation_metadata.json).inputs[x].index_feature_mapping"
    with pytest.raises(InvalidArgument) as e:
        recipe_for(_model(tmp_path, artifact=str(tmp_path), attribution={"xraiAttribution": {"stepCount": 500}}), 1000)
    assert e.value.field == "model.explanation_spec.parameters.xrai_attribution.step_count"


def test_missing_data_fails_at_upload_naming_the_uri(tmp_path):
    model = _model(tmp_path, {"gcsSource": {"uris": [str(tmp_path / "nothing-*.npy")]},
                              "nearestNeighborSearchConfig": _config()})
    with pytest.raises(InvalidArgument) as e:
        recipe_for(model, 1000)
    assert e.value.field == f"{EXAMPLES}.gcs_source.uris[0]" and "matches no file" in e.value.message


def _published(tmp_path, attribution=False):
    params = {"integratedGradientsAttribution": {"stepCount": 10}} if attribution else \
        {"examples": {"neighborCount": 5}}
    return json_format.ParseDict({"name": "models/m", "explanationSpec": {"parameters": params}}, model_pb2.Model())


@pytest.mark.parametrize("request_json, field", [
    ({}, "examples"),                                                          # nothing to do
    ({"examples": {"neighborCount": 3, "gcsSource": {"uris": ["DATA"]}}}, "examples.neighbor_count"),
    ({"examples": {"presets": {}, "gcsSource": {"uris": ["DATA"]}}}, "examples.presets"),
    ({"examples": {"gcsSource": {"uris": ["/no/such/file.jsonl"]}}}, "examples.gcs_source.uris[0]"),
    ({"removeExampleIds": ["a", ""]}, "remove_example_ids[1]"),
    ({"removeExampleIds": ["x" * 5000]}, "remove_example_ids[0]"),
    ({"removeExampleIds": ["a", "b", "c"]}, "remove_example_ids"),             # over the limit of 2
])
def test_update_requests_are_refused_naming_their_field(tmp_path, request_json, field):
    from explaind.server.builds.recipes import UpdateRecipe
    from explaind.v1 import model_service_pb2
    text = json_format.json.dumps(request_json).replace("DATA", _data(tmp_path))
    request = json_format.Parse(text, model_service_pb2.UpdateExplanationDatasetRequest())
    with pytest.raises(InvalidArgument) as e:
        UpdateRecipe.validated(request, _published(tmp_path), "b1", str(tmp_path), max_remove_ids=2)
    assert e.value.field == field


def test_an_update_needs_a_model_that_explains_by_examples(tmp_path):
    from explaind.server.builds.recipes import UpdateRecipe
    from explaind.server.errors import FailedPrecondition
    from explaind.v1 import model_service_pb2
    request = model_service_pb2.UpdateExplanationDatasetRequest(remove_example_ids=["a"])
    with pytest.raises(FailedPrecondition):
        UpdateRecipe.validated(request, _published(tmp_path, attribution=True), "b1", str(tmp_path), 10)
    recipe = UpdateRecipe.validated(request, _published(tmp_path), "b1", str(tmp_path), 10)
    assert (recipe.model_id, recipe.base_build, recipe.remove_ids, recipe.source) == ("m", "b1", ("a",), None)
