"""What a runner hands back to its job: the model as the recipe left it and,
when the recipe built an index, the index's summary; the index's files are in
the folder the job gave the runner. A runner may run the recipe in another
process, so both travel by pickle and the serving process never holds the
index itself."""
from __future__ import annotations

import dataclasses

from explaind.v1 import model_pb2

from ...index.config import SearchConfig
from ...index.example_index import IndexInfo
from ...security import uris
from ..recipes import BuildOptions, Recipe


@dataclasses.dataclass(frozen=True)
class IndexSummary:
    """What publishing needs of a built index (the attributes of ExampleIndex it reads)."""
    size: int
    dimensions: int
    info: IndexInfo
    config: SearchConfig


@dataclasses.dataclass(frozen=True)
class BuildOutput:
    model: bytes                      # the serialized Model: a recipe may fill in fields (metadata)
    index: IndexSummary | None        # None when the recipe built no index

    def model_message(self) -> model_pb2.Model:
        return model_pb2.Model.FromString(self.model)


def run_recipe(recipe: Recipe, model: model_pb2.Model, progress, options: BuildOptions, out_dir: str) -> BuildOutput:
    """Runs the recipe here and saves its index into `out_dir` (the one place a runner calls a recipe).
    The build process opens only what the serving process would: the same --allowed-uri-prefix."""
    uris.install(uris.UriPolicy(options.allowed_uri_prefixes))
    index = recipe.build(model, progress, options)
    summary = None
    if index is not None:
        index.save(out_dir)
        summary = IndexSummary(size=index.size, dimensions=index.dimensions, info=index.info, config=index.config)
    return BuildOutput(model=model.SerializeToString(), index=summary)


@dataclasses.dataclass
class ChildPayload:
    """What the serving process sends a build process (child.py)."""
    recipe: Recipe
    model: bytes                 # the serialized Model
    options: BuildOptions
    out_dir: str                 # where the index files go
    operation: str               # for logs
    log_level: str = "INFO"
    log_json: bool = True
    ray: object | None = None    # a ray_runner.RayConfig: the embedding stage runs on that cluster
    store_url: str = ""          # with ray: the store the actors write their shards to
    shard_prefix: str = ""
