"""Example search: search config -> FAISS, token restricts, crowding, CPU/GPU
search and persistence. Pure logic over numpy arrays: no server, no TensorFlow."""
from explaind.server.index.config import (
    SearchConfig,
    plan_index,
    search_config_from_json,
    search_config_from_presets,
)
from explaind.server.index.example_index import ExampleIndex
from explaind.server.index.restricts import Namespace, and_queries, parse_restricts
from explaind.server.index.search_params import SearchParams

__all__ = [
    "ExampleIndex",
    "Namespace",
    "SearchConfig",
    "SearchParams",
    "and_queries",
    "parse_restricts",
    "plan_index",
    "search_config_from_json",
    "search_config_from_presets",
]
