"""Search config mapping: Vertex JSON and presets -> SearchConfig -> FAISS plan."""
import dataclasses
import math

import pytest

from explaind.server.errors import InvalidArgument
from explaind.server.index.config import (
    EXACT_BELOW,
    SearchConfig,
    plan_index,
    search_config_from_json,
    search_config_from_presets,
)

F = "model.explanation_spec.parameters.examples.nearest_neighbor_search_config"

VERTEX_TREE_AH = {
    "contentsDeltaUri": "",
    "config": {
        "dimensions": 128,
        "approximateNeighborsCount": 10,
        "distanceMeasureType": "SQUARED_L2_DISTANCE",
        "featureNormType": "NONE",
        "algorithmConfig": {"treeAhConfig": {"leafNodeEmbeddingCount": 1000, "leafNodesToSearchPercent": 100}},
    },
}


def vertex(**config):
    base = {"dimensions": 8, "algorithmConfig": {"bruteForceConfig": {}}}
    base.update(config)
    return {"contentsDeltaUri": "", "config": base}


def test_vertex_tree_ah_json_parses():
    c = search_config_from_json(VERTEX_TREE_AH, 10, F)
    assert c == SearchConfig(dimensions=128, distance="SQUARED_L2_DISTANCE", feature_norm="NONE",
                             algorithm="tree_ah", leaf_node_embedding_count=1000,
                             leaf_nodes_to_search_percent=100.0, approximate_neighbors_count=10,
                             neighbor_count=10)


def test_brute_force_and_defaults():
    c = search_config_from_json(vertex(), 5, F)
    assert (c.algorithm, c.distance, c.feature_norm, c.neighbor_count) == (
        "brute_force", "DOT_PRODUCT_DISTANCE", "NONE", 5)


def test_protobuf_value_numbers_are_doubles():
    c = search_config_from_json(vertex(dimensions=64.0), 3.0, F)
    assert c.dimensions == 64 and isinstance(c.dimensions, int) and c.neighbor_count == 3


def test_fraction_leaf_nodes_to_search():
    v = vertex(algorithmConfig={"treeAhConfig": {"fractionLeafNodesToSearch": 0.05}})
    c = search_config_from_json(v, 10, F)
    assert c.algorithm == "tree_ah" and c.leaf_nodes_to_search_percent == pytest.approx(5.0)
    assert c.leaf_node_embedding_count == 1000


def test_tree_ah_defaults():
    c = search_config_from_json(vertex(algorithmConfig={"treeAhConfig": {}}), 10, F)
    assert (c.leaf_node_embedding_count, c.leaf_nodes_to_search_percent) == (1000, 10.0)


def test_json_round_trip():
    c = search_config_from_json(VERTEX_TREE_AH, 7, F)
    assert SearchConfig.from_json(c.to_json()) == c
    p = search_config_from_presets("FAST", "IMAGE", 4)
    assert SearchConfig.from_json(p.to_json()) == p


@pytest.mark.parametrize("config, path", [
    ({"dimensions": None}, ".config.dimensions"),
    ({"dimensions": 0}, ".config.dimensions"),
    ({"dimensions": "128"}, ".config.dimensions"),
    ({"dimensions": 12.5}, ".config.dimensions"),
    ({"dimensions": True}, ".config.dimensions"),
    ({"distanceMeasureType": "HAMMING"}, ".config.distanceMeasureType"),
    ({"featureNormType": "L1_NORM"}, ".config.featureNormType"),
    ({"approximateNeighborsCount": -1}, ".config.approximateNeighborsCount"),
    ({"algorithmConfig": {"scannConfig": {}}}, ".config.algorithmConfig.scannConfig"),
    ({"algorithmConfig": {}}, ".config.algorithmConfig"),
    ({"algorithmConfig": {"treeAhConfig": {}, "bruteForceConfig": {}}}, ".config.algorithmConfig"),
    ({"algorithmConfig": "treeAh"}, ".config.algorithmConfig"),
    ({"algorithmConfig": {"treeAhConfig": {"leafNodeEmbeddingCount": 0}}},
     ".config.algorithmConfig.treeAhConfig.leafNodeEmbeddingCount"),
    ({"algorithmConfig": {"treeAhConfig": {"leafNodesToSearchPercent": 101}}},
     ".config.algorithmConfig.treeAhConfig.leafNodesToSearchPercent"),
    ({"algorithmConfig": {"treeAhConfig": {"leafNodesToSearchPercent": -5}}},
     ".config.algorithmConfig.treeAhConfig.leafNodesToSearchPercent"),
    ({"algorithmConfig": {"treeAhConfig": {"fractionLeafNodesToSearch": 1.5}}},
     ".config.algorithmConfig.treeAhConfig.fractionLeafNodesToSearch"),
    ({"algorithmConfig": {"treeAhConfig": {"fractionLeafNodesToSearch": 0}}},
     ".config.algorithmConfig.treeAhConfig.fractionLeafNodesToSearch"),
])
def test_errors_name_the_field(config, path):
    with pytest.raises(InvalidArgument) as e:
        search_config_from_json(vertex(**config), 10, F)
    assert e.value.field == F + path


def test_config_must_be_an_object():
    with pytest.raises(InvalidArgument) as e:
        search_config_from_json({"config": [1]}, 10, F)
    assert e.value.field == F + ".config"
    with pytest.raises(InvalidArgument) as e:
        search_config_from_json("brute", 10, F)
    assert e.value.field == F


def cfg(**kw):
    base = dict(dimensions=8, distance="SQUARED_L2_DISTANCE", feature_norm="NONE", algorithm="tree_ah")
    base.update(kw)
    return SearchConfig(**base)


@pytest.mark.parametrize("n, leaf, percent, nlist, nprobe", [
    (100_000, 1000, 10, 100, 10),
    (100_000, 1000, 100, 100, 100),
    (123_456, 1000, 10, 124, 13),      # ceil both ways
    (100_000, 700, 3, 143, 5),
    (50_000, 1000, 0.1, 50, 1),        # at least one list probed
    (20_000, 10, 10, 512, 52),        # nlist capped at N // 39
])
def test_nlist_nprobe_formulas(n, leaf, percent, nlist, nprobe):
    plan = plan_index(cfg(leaf_node_embedding_count=leaf, leaf_nodes_to_search_percent=percent), n)
    assert (plan.nlist, plan.nprobe) == (nlist, nprobe)
    assert plan.index_type == f"IVF{nlist},PQ8x4fs"      # 4-bit codes of one dimension each (d = 8)


@pytest.mark.parametrize("d, m", [(8, 8), (128, 128), (7, 7), (1, 1)])
def test_codes_have_one_dimension_each(d, m):
    assert plan_index(cfg(dimensions=d), 100_000).pq_m == m


@pytest.mark.parametrize("given, neighbors, k, want", [
    (0, 10, 10, 200),       # unset: 20 per neighbor
    (50, 10, 10, 50),       # approximateNeighborsCount
    (50, 10, 40, 200),      # a request for more neighbors re-ranks proportionally more
    (5, 10, 10, 10),        # never fewer than k
])
def test_rerank_count(given, neighbors, k, want):
    from explaind.server.index.config import rerank_count
    assert rerank_count(cfg(approximate_neighbors_count=given, neighbor_count=neighbors), k) == want


def test_fraction_maps_to_nprobe():
    c = search_config_from_json(vertex(algorithmConfig={"treeAhConfig": {"fractionLeafNodesToSearch": 0.05}}), 10, F)
    c = dataclasses.replace(c, dimensions=8)
    assert plan_index(c, 200_000).nprobe == math.ceil(200 * 0.05)


def test_small_and_brute_force_are_exact():
    assert plan_index(cfg(), EXACT_BELOW - 1).exact
    assert not plan_index(cfg(), EXACT_BELOW * 10).exact
    assert plan_index(cfg(algorithm="brute_force"), 10_000_000).exact
    assert plan_index(cfg(leaf_node_embedding_count=10_000_000), 100_000).exact  # one list: flat
    assert plan_index(cfg(), 1000).index_type == "Flat"


@pytest.mark.parametrize("modality, distance", [
    ("IMAGE", "COSINE_DISTANCE"), ("TEXT", "COSINE_DISTANCE"),
    ("TABULAR", "SQUARED_L2_DISTANCE"), ("", "SQUARED_L2_DISTANCE"),
    ("MODALITY_UNSPECIFIED", "SQUARED_L2_DISTANCE"),
])
def test_presets_modality(modality, distance):
    c = search_config_from_presets("PRECISE", modality, 10)
    assert (c.distance, c.feature_norm, c.algorithm, c.dimensions) == (distance, "NONE", "tree_ah", None)


def test_presets_query():
    precise = search_config_from_presets("", "TABULAR", 10)
    fast = search_config_from_presets("FAST", "TABULAR", 10)
    assert precise == search_config_from_presets("PRECISE", "TABULAR", 10)
    assert fast.leaf_nodes_to_search_percent < precise.leaf_nodes_to_search_percent
    with pytest.raises(InvalidArgument) as e:
        search_config_from_presets("FASTEST", "TABULAR", 10)
    assert e.value.field.endswith("presets.query")
    with pytest.raises(InvalidArgument) as e:
        search_config_from_presets("FAST", "AUDIO", 10)
    assert e.value.field.endswith("presets.modality")
