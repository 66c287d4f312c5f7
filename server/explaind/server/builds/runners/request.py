"""What a job hands its runner: the build to run (a BuildTask, which pickles, so a
build process or Ray can take it) and the job's side of it (progress, cancel).
A runner sees nothing else of the job: the job keeps the operation, its record,
its heartbeats and the publishing."""
from __future__ import annotations

import dataclasses
import threading
from typing import TYPE_CHECKING, Protocol

from explaind.v1 import model_pb2

from ..recipes import BuildOptions, Progress, Recipe

if TYPE_CHECKING:
    from .outcome import BuildOutput


class BuildCancelled(Exception):
    """The build must stop: CancelOperation, another replica took it over, or a shutdown."""


@dataclasses.dataclass(frozen=True)
class BuildTask:
    """One build, as any runner runs it."""
    recipe: Recipe
    model: bytes                 # the serialized Model; a recipe may fill fields in (BuildOutput gives it back)
    options: BuildOptions
    out_dir: str                 # where the index's files go (outcome.index_folders)
    build_id: str                # names the build's new vector segment
    operation: str = ""          # the operation's name: for logs and the Ray job's metadata
    store_uri: str = ""          # with Ray: the store (ModelStore.uri) the actors write their shards to
    shard_prefix: str = ""       # ... under this key (ModelStore.shards_prefix)

    def model_message(self) -> model_pb2.Model:
        return model_pb2.Model.FromString(self.model)


@dataclasses.dataclass(frozen=True)
class BuildRequest:
    # A BuildTask, or a task of its own kind that runs itself in the build process
    # (run_in_process(progress, ray); a batch job's, batch/task.py).
    task: BuildTask
    progress: Progress           # the job: stages and example counts (a batch job's rows);
                                 # each call may raise BuildCancelled
    cancel: threading.Event      # set when the build must stop


class Runner(Protocol):
    def run(self, request: BuildRequest) -> "BuildOutput":
        """The build's outcome, its index files in request.task.out_dir; raises what fails the build."""
        ...
