"""The committed stubs in client/explaind/v1 must be exactly what proto/ generates."""
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import gen_protos  # noqa: E402


def test_committed_stubs_match_protos(tmp_path):
    gen_protos.generate(tmp_path)
    proto_folders = sorted(str(p.parent.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))
    assert sorted(set(proto_folders)) == sorted(gen_protos.PACKAGES), "a proto folder gen_protos does not generate"
    for package in gen_protos.PACKAGES + ("explaind/vertex",):
        fresh = tmp_path / package
        committed = ROOT / "client" / package
        fresh_names = sorted(p.name for p in fresh.iterdir() if p.is_file())
        committed_names = sorted(p.name for p in committed.iterdir() if p.is_file() and p.suffix in (".py", ".pyi"))
        assert fresh_names == committed_names, f"{package}: run python tools/gen_protos.py"
        stale = [n for n in fresh_names if (fresh / n).read_bytes() != (committed / n).read_bytes()]
        assert not stale, f"{package}: stubs out of date with proto/: {stale}; run: python tools/gen_protos.py"


def test_seed_payloads_parse():
    """Vertex AI's example-based model payload and request parse unchanged."""
    from google.protobuf import json_format
    from explaind.v1 import model_pb2, prediction_service_pb2

    model = {
        "displayName": "my-model",
        "artifactUri": "gs://bucket/model",
        "containerSpec": {"imageUri": "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-11:latest"},
        "explanationSpec": {
            "parameters": {"examples": {
                "gcsSource": {"uris": ["gs://bucket/data/*.jsonl"]},
                "neighborCount": 10,
                "nearestNeighborSearchConfig": {
                    "contentsDeltaUri": "",
                    "config": {
                        "dimensions": 128, "approximateNeighborsCount": 10,
                        "distanceMeasureType": "SQUARED_L2_DISTANCE", "featureNormType": "NONE",
                        "algorithmConfig": {"treeAhConfig": {"leafNodeEmbeddingCount": 1000,
                                                             "leafNodesToSearchPercent": 100}}}}}},
            "metadata": {"outputs": {"embedding": {"outputTensorName": "embedding"}},
                         "inputs": {"my_input": {"inputTensorName": "bytes_inputs", "encoding": "IDENTITY",
                                                 "modality": "image"}},
                         "latentSpaceSource": "embedding"}},
    }
    parsed = json_format.ParseDict(model, model_pb2.Model())
    examples = parsed.explanation_spec.parameters.examples
    assert examples.neighbor_count == 10
    assert examples.nearest_neighbor_search_config.struct_value["config"]["dimensions"] == 128
    assert parsed.explanation_spec.metadata.latent_space_source == "embedding"
    request = {"instances": [{"id": "data_index", "bytes_inputs": {"b64": "AAAA"}, "restricts": "",
                              "crowding_tag": ""}]}
    parsed_request = json_format.ParseDict(request, prediction_service_pb2.ExplainRequest())
    assert parsed_request.instances[0].struct_value["id"] == "data_index"
