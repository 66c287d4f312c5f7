"""Search configuration: Vertex AI's nearest_neighbor_search_config and presets
mapped to one frozen SearchConfig, and SearchConfig mapped to a FAISS plan.

docs/semantics.md (Distances, Algorithms, Defaults and bounds) is the spec.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from explaind.server.errors import DimensionMismatch, InvalidArgument
from explaind.server.index.kinds import IndexKind

DISTANCES = ("DOT_PRODUCT_DISTANCE", "SQUARED_L2_DISTANCE", "L1_DISTANCE", "COSINE_DISTANCE")
NORMS = ("NONE", "UNIT_L2_NORM")
DEFAULT_DISTANCE = "DOT_PRODUCT_DISTANCE"  # as in Vertex
DEFAULT_NORM = "NONE"
DEFAULT_NEIGHBOR_COUNT = 10  # as in Vertex

# Below this many examples every algorithm gets an exact flat index: exhaustive
# search over a few thousand vectors costs microseconds, and k-means on so few
# points gives cells too small to be worth probing.
EXACT_BELOW = 5000
# FAISS k-means wants about 39 training points per centroid; fewer gives poor
# centroids (and a warning), so nlist is capped at N // 39.
MIN_POINTS_PER_LIST = 39

# Presets (Vertex's `presets {query, modality}`). A preset's leaves searched
# and candidates are open: a treeAh build picks them, with the codes' shape, to
# reach the preset's floor on the uploaded data (tuning.py, PRESET_FLOORS). The
# values below are what a build starts from and what an index uses where it
# cannot measure (a GPU twin re-ranks at least this many: gpu_codes.py's
# 8-bit codes of 4 dimensions are coarser than the CPU's). They were chosen on
# deliberately overlapping Gaussian mixtures (30k-40k points, 32-64 dims;
# tests/unit/test_index_recall.py) with 4-bit codes of 2 dimensions each:
# PRECISE probes 30% of the lists and re-ranks 400 candidates (recall >= 0.99),
# FAST 5% and 128 (>= 0.90). Unstructured data (one isotropic Gaussian) needs
# far more of the lists: the build measures it.
PRESETS = {
    "PRECISE": {"leaf_node_embedding_count": 500, "leaf_nodes_to_search_percent": 30.0,
                "approximate_neighbors_count": 400},
    "FAST": {"leaf_node_embedding_count": 500, "leaf_nodes_to_search_percent": 5.0,
             "approximate_neighbors_count": 128},
}
# treeAh without approximateNeighborsCount re-ranks this many candidates per
# neighbor asked (200 for the default 10 neighbors, as PRECISE) until the build
# has measured what the data needs (tuning.py).
DEFAULT_CANDIDATES_PER_NEIGHBOR = 20
# Recall@neighborCount a build measures its index against (recall.py): below the
# floor the operation warns. A preset's open settings are tuned to reach its
# floor; a full config's to CONFIG_TARGET, what its default of 20 candidates per
# neighbor gave on clustered data, warned below CONFIG_FLOOR.
PRESET_FLOORS = {"PRECISE": 0.99, "FAST": 0.90}
CONFIG_FLOOR = 0.9
CONFIG_TARGET = 0.99
# Settings a config may leave to the build (SearchConfig.open_settings).
LEAVES, CANDIDATES = "leaves", "candidates"
_UNSPECIFIED = ("", None, "QUERY_UNSPECIFIED", "MODALITY_UNSPECIFIED")


@dataclass(frozen=True)
class SearchConfig:
    dimensions: int | None  # None until known (presets): filled by dataclasses.replace
    distance: str = DEFAULT_DISTANCE
    feature_norm: str = DEFAULT_NORM
    algorithm: str = "tree_ah"
    leaf_node_embedding_count: int = 1000
    leaf_nodes_to_search_percent: float = 10.0
    approximate_neighbors_count: int = 0
    neighbor_count: int = DEFAULT_NEIGHBOR_COUNT
    preset: str = ""            # PRECISE or FAST when the model asked a preset
    # What the request left to the build (LEAVES, CANDIDATES): a treeAh build
    # measures its data and picks them, with the codes' shape (tuning.py). A
    # config made in code leaves nothing open: its values are used as given.
    open_settings: frozenset = frozenset()

    @property
    def recall_floor(self) -> float:
        """Below this measured recall the build warns."""
        return PRESET_FLOORS.get(self.preset, CONFIG_FLOOR)

    @property
    def recall_target(self) -> float:
        """What the build tunes open settings to reach."""
        return PRESET_FLOORS.get(self.preset, CONFIG_TARGET)

    def to_json(self) -> dict:
        return {
            "dimensions": self.dimensions,
            "distanceMeasureType": self.distance,
            "featureNormType": self.feature_norm,
            "algorithm": self.algorithm,
            "leafNodeEmbeddingCount": self.leaf_node_embedding_count,
            "leafNodesToSearchPercent": self.leaf_nodes_to_search_percent,
            "approximateNeighborsCount": self.approximate_neighbors_count,
            "neighborCount": self.neighbor_count,
            "preset": self.preset,
            "openSettings": sorted(self.open_settings),
        }

    @classmethod
    def from_json(cls, d: dict) -> "SearchConfig":
        return cls(
            dimensions=d["dimensions"],
            distance=d["distanceMeasureType"],
            feature_norm=d["featureNormType"],
            algorithm=d["algorithm"],
            leaf_node_embedding_count=int(d["leafNodeEmbeddingCount"]),
            leaf_nodes_to_search_percent=float(d["leafNodesToSearchPercent"]),
            approximate_neighbors_count=int(d["approximateNeighborsCount"]),
            neighbor_count=int(d["neighborCount"]),
            preset=str(d.get("preset") or ""),
            open_settings=frozenset(str(s) for s in d.get("openSettings") or ()),
        )


@dataclass(frozen=True)
class IndexPlan:
    """What FAISS index a config gives for N examples. nlist == 0: exact flat.
    pq_m > 0: the lists hold 4-bit product-quantizer codes of pq_m
    sub-vectors (FAISS fast-scan), re-ranked exactly against the full vectors;
    pq_m == 0 with lists: IVF-Flat (only indexes saved by format 1). The code
    shape a build picks (code_space.py) is the index's, not the plan's."""

    nlist: int
    nprobe: int
    pq_m: int = 0

    @property
    def exact(self) -> bool:
        return self.nlist == 0

    @property
    def kind(self) -> IndexKind:
        if self.exact:
            return IndexKind.FLAT
        return IndexKind.IVF_PQ if self.pq_m else IndexKind.IVF_FLAT

    @property
    def index_type(self) -> str:
        """The Model's index_type."""
        return self.kind.faiss_description(self.nlist, self.pq_m)


def pq_subvectors(dimensions: int) -> int:
    """Sub-vectors of the 4-bit codes of a config whose settings are all given:
    one a dimension (d/2 bytes a vector, 8x smaller than float32), the most
    faithful shape. Measured against 2 dimensions a code (d/4 bytes, what
    ScaNN's asymmetric hashing uses by default) on bench/bench_ann.py's mixture:
    22 re-ranked candidates reach recall@10 0.95 where 2-dimension codes need
    70-80. Where settings are open the build measures other shapes too
    (tuning.py)."""
    return dimensions


def plan_index(config: SearchConfig, n: int) -> IndexPlan:
    """nlist = ceil(N / leafNodeEmbeddingCount) capped at N // 39,
    nprobe = ceil(nlist * percent / 100); exact below EXACT_BELOW examples."""
    if config.algorithm == "brute_force" or n < EXACT_BELOW:
        return IndexPlan(0, 0)
    nlist = min(math.ceil(n / config.leaf_node_embedding_count), n // MIN_POINTS_PER_LIST)
    if nlist <= 1:
        return IndexPlan(0, 0)
    nprobe = min(nlist, max(1, math.ceil(nlist * config.leaf_nodes_to_search_percent / 100.0 - 1e-9)))
    return IndexPlan(nlist, nprobe, pq_subvectors(config.dimensions or 0))


def untuned_candidates(config: SearchConfig) -> int:
    """approximateNeighborsCount before a build tuned it: the preset's, the
    config's own, or 0 (20 per neighbor)."""
    if CANDIDATES not in config.open_settings:
        return config.approximate_neighbors_count
    return PRESETS[config.preset]["approximate_neighbors_count"] if config.preset in PRESETS else 0


def rerank_count(config: SearchConfig, k: int) -> int:
    """Candidates a compressed index re-ranks exactly to answer k neighbors:
    approximateNeighborsCount for the model's neighborCount (20 per neighbor
    when not given), scaled up for a request that asks more neighbors, never
    fewer than k."""
    per_model = config.approximate_neighbors_count or DEFAULT_CANDIDATES_PER_NEIGHBOR * config.neighbor_count
    base = max(config.neighbor_count, 1)
    return max(k, per_model, math.ceil(per_model * k / base))


# ---------------------------------------------------------------- parsing


def _int(value: Any, field: str, minimum: int) -> int:
    # protobuf Value carries every number as a double: accept 128.0, not 128.5 or true.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(f"must be an integer, got {value!r}", field=field)
    if isinstance(value, float) and not value.is_integer():
        raise InvalidArgument(f"must be an integer, got {value!r}", field=field)
    if value < minimum:
        raise InvalidArgument(f"must be >= {minimum}, got {value!r}", field=field)
    return int(value)


def _number(value: Any, field: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise InvalidArgument(f"must be a number, got {value!r}", field=field)
    if not low < value <= high:
        raise InvalidArgument(f"must be in ({low:g}, {high:g}], got {value!r}", field=field)
    return float(value)


def _enum(value: Any, field: str, allowed: tuple[str, ...], default: str) -> str:
    if value is None or value == "" or (isinstance(value, str) and value.endswith("_UNSPECIFIED")):
        return default
    if not isinstance(value, str) or value not in allowed:
        raise InvalidArgument(f"unknown value {value!r}; expected one of {', '.join(allowed)}", field=field)
    return value


def _object(value: Any, field: str) -> dict:
    if not isinstance(value, dict):
        raise InvalidArgument(f"must be an object, got {type(value).__name__}", field=field)
    return value


def _algorithm(value: Any, field: str) -> dict:
    """algorithmConfig -> SearchConfig keyword arguments. Absent: treeAh defaults
    (Vertex's default algorithm)."""
    if value is None:
        return {"algorithm": "tree_ah", "leaf_nodes_to_search_percent": 10.0, "open_settings": frozenset({LEAVES})}
    algo = _object(value, field)
    chosen = [k for k in ("treeAhConfig", "bruteForceConfig") if k in algo]
    unknown = [k for k in algo if k not in ("treeAhConfig", "bruteForceConfig")]
    if unknown:
        raise InvalidArgument(f"unknown algorithm {unknown[0]!r}; expected treeAhConfig or bruteForceConfig",
                              field=f"{field}.{unknown[0]}")
    if len(chosen) != 1:
        raise InvalidArgument("give exactly one of treeAhConfig, bruteForceConfig", field=field)
    if chosen[0] == "bruteForceConfig":
        _object(algo["bruteForceConfig"] or {}, f"{field}.bruteForceConfig")
        return {"algorithm": "brute_force"}
    tree_field = f"{field}.treeAhConfig"
    tree = _object(algo["treeAhConfig"] or {}, tree_field)
    out: dict[str, Any] = {"algorithm": "tree_ah"}
    if tree.get("leafNodeEmbeddingCount") is not None:
        out["leaf_node_embedding_count"] = _int(
            tree["leafNodeEmbeddingCount"], f"{tree_field}.leafNodeEmbeddingCount", 1)
    percent = tree.get("leafNodesToSearchPercent")
    fraction = tree.get("fractionLeafNodesToSearch")
    if percent is not None and fraction is not None:
        raise InvalidArgument("give leafNodesToSearchPercent or fractionLeafNodesToSearch, not both",
                              field=f"{tree_field}.fractionLeafNodesToSearch")
    if percent is not None:
        out["leaf_nodes_to_search_percent"] = _number(percent, f"{tree_field}.leafNodesToSearchPercent", 0, 100)
    elif fraction is not None:
        out["leaf_nodes_to_search_percent"] = 100.0 * _number(
            fraction, f"{tree_field}.fractionLeafNodesToSearch", 0, 1)
    else:
        # Neither given: the build picks the leaves searched (tuning.py); 10%
        # (the older percent field's default, docs/semantics.md) until it has.
        out["leaf_nodes_to_search_percent"] = 10.0
        out["open_settings"] = frozenset({LEAVES})
    return out


def search_config_from_json(value: dict, neighbor_count: int, field: str) -> SearchConfig:
    """Vertex's nearest_neighbor_search_config JSON -> SearchConfig.

    `field` is the request path of `value`; errors name the full path of the
    offending key. The `config` wrapper may be omitted (the keys then sit at
    the top level)."""
    root = _object(value, field)
    if "config" in root:
        cfg_field = f"{field}.config"
        cfg = _object(root["config"], cfg_field)
    else:
        cfg_field, cfg = field, root
    if cfg.get("dimensions") is None:
        raise InvalidArgument("dimensions is required", field=f"{cfg_field}.dimensions")
    dims = _int(cfg["dimensions"], f"{cfg_field}.dimensions", 1)
    ann = cfg.get("approximateNeighborsCount")
    ann = 0 if ann is None else _int(ann, f"{cfg_field}.approximateNeighborsCount", 0)
    algorithm = _algorithm(cfg.get("algorithmConfig"), f"{cfg_field}.algorithmConfig")
    open_settings = set(algorithm.pop("open_settings", ()))
    if ann == 0:
        open_settings.add(CANDIDATES)
    return SearchConfig(
        dimensions=dims,
        distance=_enum(cfg.get("distanceMeasureType"), f"{cfg_field}.distanceMeasureType",
                       DISTANCES, DEFAULT_DISTANCE),
        feature_norm=_enum(cfg.get("featureNormType"), f"{cfg_field}.featureNormType", NORMS, DEFAULT_NORM),
        approximate_neighbors_count=ann,
        neighbor_count=int(neighbor_count),
        open_settings=frozenset(open_settings) if algorithm["algorithm"] == "tree_ah" else frozenset(),
        **algorithm,
    )


def search_config_from_presets(query: str, modality: str, neighbor_count: int,
                               field: str = "presets") -> SearchConfig:
    """Vertex presets -> SearchConfig (dimensions None until the latent size is known).
    `field` is the request path of the presets."""
    query = "PRECISE" if query in _UNSPECIFIED else query
    if query not in PRESETS:
        raise InvalidArgument(f"unknown preset query {query!r}; expected PRECISE or FAST",
                              field=f"{field}.query")
    modality = "TABULAR" if modality in _UNSPECIFIED else modality
    if modality in ("IMAGE", "TEXT"):
        distance = "COSINE_DISTANCE"
    elif modality == "TABULAR":
        distance = "SQUARED_L2_DISTANCE"
    else:
        raise InvalidArgument(f"unknown preset modality {modality!r}; expected IMAGE, TEXT or TABULAR",
                              field=f"{field}.modality")
    return SearchConfig(dimensions=None, distance=distance, feature_norm="NONE", algorithm="tree_ah",
                        neighbor_count=neighbor_count, preset=query, open_settings=frozenset({LEAVES, CANDIDATES}),
                        **PRESETS[query])


def with_dimensions(config: SearchConfig, dimensions: int) -> SearchConfig:
    """The config with its dimensions filled in (presets leave them None), or
    checked against the embeddings' when it gives them."""
    if config.dimensions is not None and dimensions != config.dimensions:
        raise DimensionMismatch(f"dimensions is {config.dimensions} but the latent space has {dimensions} dimensions")
    return config if config.dimensions is not None else dataclasses.replace(config, dimensions=dimensions)
