"""What the serving process (local.py) and a build process (child.py) say to each
other over their socket, by pickle:

  serving -> build   ChildPayload, once
  build -> serving   StageReached and ExamplesProgress while the recipe runs (RowsProgress
                     while a batch job's task runs), then one of BuildDone (the index is in
                     the task's out_dir; a batch task's BatchOutput), BuildFailed (an
                     ExplaindError, by its class in errors.py) or BuildCrashed (any other exception)
"""
from __future__ import annotations

import dataclasses

from ... import errors
from ...errors import ExplaindError
from .outcome import BuildOutput
from .ray_embedding import RayConfig
from .request import BuildTask


@dataclasses.dataclass(frozen=True)
class ChildPayload:
    task: BuildTask
    log_level: str = "INFO"
    log_json: bool = True
    ray: RayConfig | None = None      # the embedding stage runs on that Ray cluster; None: in the process


@dataclasses.dataclass(frozen=True)
class StageReached:
    stage: int                        # an UploadModelOperationMetadata.Stage


@dataclasses.dataclass(frozen=True)
class ExamplesProgress:
    embedded: int
    total: int


@dataclasses.dataclass(frozen=True)
class RowsProgress:
    """A batch job's rows: read and answered (`done`, failures included), failed, and in all."""
    done: int
    failed: int
    total: int


@dataclasses.dataclass(frozen=True)
class BuildDone:
    output: BuildOutput           # or a batch task's BatchOutput (batch/task.py)


@dataclasses.dataclass(frozen=True)
class BuildFailed:
    """An ExplaindError, by the nearest class errors.py defines (the store's StoreUnavailable
    travels as an Unavailable): the serving process raises it again with its code and field."""
    error_class: str
    message: str
    field: str | None = None

    @classmethod
    def of(cls, error: ExplaindError) -> "BuildFailed":
        named = next(c for c in type(error).__mro__ if c.__module__ == ExplaindError.__module__)
        return cls(named.__name__, error.message, error.field)

    def error(self) -> ExplaindError:
        cls = getattr(errors, self.error_class, None)
        if not (isinstance(cls, type) and issubclass(cls, ExplaindError)):
            cls = ExplaindError
        return cls(self.message, field=self.field)


@dataclasses.dataclass(frozen=True)
class BuildCrashed:
    """Any other exception: an INTERNAL failure naming its type."""
    exception_type: str
    message: str

    def error(self) -> ExplaindError:
        return ExplaindError(f"{self.exception_type}: {self.message}")


ChildMessage = StageReached | ExamplesProgress | RowsProgress | BuildDone | BuildFailed | BuildCrashed
