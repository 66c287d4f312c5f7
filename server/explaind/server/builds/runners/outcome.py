"""What a runner hands back to its job: the model as the recipe left it and,
when the recipe built an index, the index's summary; the index's files are in
the folder the job gave the runner, in the store's layout:

  {out_dir}/index/      the build's files (models/{id}/builds/{build}/)
  {out_dir}/segments/   the vector segment a compressed index's build added, named
                        after the build ({build}.npy, models/{id}/segments/)

A runner may run the recipe in another process, so both travel by pickle and
the serving process never holds the index itself."""
from __future__ import annotations

import dataclasses
import os
import shutil

from explaind.v1 import model_pb2

from ...index.config import SearchConfig
from ...index.example_index import ExampleIndex, IndexInfo
from ...security import uris
from ..recipes import BuildOptions, Progress
from .request import BuildTask


@dataclasses.dataclass(frozen=True)
class IndexSummary:
    """What publishing needs of a built index: the Model's IndexInfo, the search
    config of the record, the segments to keep when older builds are pruned, and
    an update's counts for its response."""
    size: int                                  # live examples
    dimensions: int
    info: IndexInfo
    config: SearchConfig
    segment_names: tuple[str, ...] = ()        # the vector segments the build reads (a compressed index's)
    added_since_training: int = 0              # examples encoded with codebooks trained before them
    retrain_recommended: bool = False
    last_update: tuple[int, int] = (0, 0)      # (added, removed) by the update that made it

    @classmethod
    def of(cls, index: ExampleIndex, options: BuildOptions) -> "IndexSummary":
        return cls(size=index.live_count, dimensions=index.dimensions, info=index.info, config=index.config,
                   segment_names=tuple(index.segment_names),
                   added_since_training=index.added_since_training,
                   retrain_recommended=index.retrain_due(options.retrain_added_fraction),
                   last_update=tuple(index.last_update))

    def index_info(self, stored_bytes: int) -> model_pb2.IndexInfo:
        """The Model's IndexInfo; `stored_bytes` (the build's files) stands in for an unknown memory size."""
        info, config = self.info, self.config
        out = model_pb2.IndexInfo(
            example_count=self.size, dimensions=self.dimensions, index_type=info.index_type,
            index_bytes=info.index_bytes or stored_bytes, device=info.device, distance_measure_type=config.distance,
            feature_norm_type=config.feature_norm, nlist=info.nlist, nprobe=info.nprobe,
            mapped_bytes=info.mapped_bytes, examples_added_since_training=self.added_since_training,
            retrain_recommended=self.retrain_recommended)
        if info.recall is not None:
            out.recall.CopyFrom(self.recall_message())
        if info.tuning is not None:
            t = info.tuning
            out.tuning.CopyFrom(model_pb2.IndexTuning(leaves_searched=t.leaves, candidates=t.candidates,
                                                      code_shape=t.code_shape, target=t.target, reason=t.reason))
        return out

    def recall_message(self) -> model_pb2.IndexRecall:
        """The recall the build measured (empty when it measured none)."""
        r = self.info.recall
        if r is None:
            return model_pb2.IndexRecall()
        return model_pb2.IndexRecall(
            recall=r.recall, neighbor_count=r.neighbor_count, queries=r.queries, floor=r.floor,
            alternatives=[model_pb2.RecallAlternative(setting=a.setting, current_value=a.now, value=a.value,
                                                      recall=a.recall) for a in r.alternatives])

    def warnings(self) -> list[str]:
        """What the operation warns about: a recall below the floor."""
        warning = self.info.recall.warning() if self.info.recall is not None else None
        return [warning] if warning else []


@dataclasses.dataclass(frozen=True)
class BuildOutput:
    model: bytes                      # the serialized Model: a recipe may fill in fields (metadata)
    index: IndexSummary | None        # None when the recipe built no index

    def model_message(self) -> model_pb2.Model:
        return model_pb2.Model.FromString(self.model)


def index_folders(out_dir: str) -> tuple[str, str]:
    """(the build's files, its new segments) inside a runner's out_dir."""
    return os.path.join(out_dir, "index"), os.path.join(out_dir, "segments")


def run_recipe(task: BuildTask, progress: Progress) -> BuildOutput:
    """Runs the task's recipe here and saves its index into task.out_dir (index_folders; a new
    segment is named after the build). The one place a runner calls a recipe. The build process
    opens only what the serving process would: the same --allowed-uri-prefix."""
    scratch = os.path.join(task.out_dir, "scratch")      # large files of the build (BuildOptions.scratch_dir)
    os.makedirs(scratch, exist_ok=True)
    options = dataclasses.replace(task.options, scratch_dir=scratch)
    uris.install(uris.UriPolicy(options.allowed_uri_prefixes))
    model = task.model_message()
    try:
        index = task.recipe.build(model, progress, options)
        summary = None
        if index is not None:
            files, segments = index_folders(task.out_dir)
            os.makedirs(files, exist_ok=True)
            os.makedirs(segments, exist_ok=True)
            index.save(files, segments, segment_name=task.build_id)       # the scratch segment is linked there
            summary = IndexSummary.of(index, options)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return BuildOutput(model=model.SerializeToString(), index=summary)
