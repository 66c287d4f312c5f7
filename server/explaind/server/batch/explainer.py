"""Answers a batch job's rows with the online data plane itself, so each row's
explanation and prediction are what Explain and Predict answer for it.

In the job's process (never the serving one): the published build the job
started with is loaded from the store into a private cache (a hard link per
file for a local store), its servable behind a ModelManager, an Engine and a
DataPlane as a replica has them. A batch of rows is one Explain call (whose
answers carry the predictions), or one Predict call for a job of predictions
only; a call that fails names the row it failed on (its "instances[i]"): that
row goes to the errors and the others are asked again. A failure no row is
named for is asked row by row.

Each row's line is the JSON of Vertex AI's batch output: the instance (or its
key), the prediction, and the explanation as the REST Explain answer writes it.
Where the job's model and override allow (arrays.py), a batch is answered as
arrays across its rows and the same lines are written from them, without the
per-row messages the Explain answer is built of; the rest takes the data plane.
"""
from __future__ import annotations

import asyncio
import dataclasses
import functools
import gc
import json
import re
import shutil
import tempfile
from typing import Any, Callable

import grpc

from explaind.client.values import to_python, to_value
from explaind.vertex.v1 import prediction_service_pb2 as vertex

from ..errors import ExplaindError
from ..index.backend import use_blas_for_batches
from ..serving.cpu import available_cores
from ..serving.data_plane import DataPlane
from ..serving.engine import Engine
from ..serving.loader import BuildLoader
from ..serving.manager import ModelManager
from ..store.models import ModelRecord, ModelStore
from ..vertex.prediction import write_vertex_explanation
from .arrays import ArrayPath
from .decoded import decoded
from .instances import Prepared
from .json_lines import dumps_line
from .message_json import message_dict
from .rows import RowError
from .task import BatchTask

_ROW = re.compile(r"^instances\[(\d+)\]")


@dataclasses.dataclass(frozen=True)
class EngineSettings:
    """The Engine's settings in a job: one batch per call, run at once."""
    max_batch_size: int
    search_threads: int = 0
    max_queue_delay_ms: float = 0.0
    max_queued: int = 1 << 30


class PinnedLoader(BuildLoader):
    """Serves one record: the build the job started with, whatever is published meanwhile."""

    def __init__(self, models: ModelStore, cache_dir: str, use_gpu: bool | None, record: ModelRecord):
        super().__init__(models, cache_dir, use_gpu)
        self.pinned = record

    def record(self, model_id: str) -> ModelRecord | None:
        return self.pinned if model_id == self.pinned.model_id else None

    def published(self, model_id: str) -> ModelRecord | None:
        return self.record(model_id)


class RowExplainer:
    def __init__(self, task: BatchTask, cores: int | None = None):
        """`cores`: the cores the job may use (a Ray actor's share); None: this process's."""
        options = task.options
        self.record = task.model_record()
        self.model_id = self.record.model_id
        self.override = task.override_message()
        self.explained = task.explained
        self._cache = tempfile.mkdtemp(prefix="explaind-batch-")
        loader = PinnedLoader(ModelStore.at(task.store_uri), self._cache, options.use_gpu, self.record)
        self.manager = ModelManager(loader)
        self.engine = Engine(EngineSettings(options.batch_size, options.search_threads))
        self.plane = DataPlane(self.manager, self.engine, options.limits)
        self.loop = asyncio.new_event_loop()
        self.input_names: frozenset[str] = frozenset()
        self.arrays: ArrayPath | None = None
        self._limits = options.limits
        self.cores = cores or available_cores()

    def load(self) -> None:
        """Loads the model now (a model that does not load fails the job, not its rows), and picks
        the job's path: arrays across each batch where they answer the job (arrays.py), else
        the data plane's Explain."""
        servable = self.manager.load(self.model_id)
        self.input_names = frozenset(servable.input_names() or ()) if servable is not None else frozenset()
        # A job has no event loop to leave a core to: a batch's search takes every core, through
        # BLAS as a serving process's does (its OpenMP team keeps FAISS's default).
        use_blas_for_batches()
        self.arrays = ArrayPath.of(servable, self.override, self._limits, self.explained, self.cores)
        # What is loaded now (TensorFlow's modules, the model, the index) lives as long as the job:
        # out of the collector's sight, whose full passes over it cost more than the rows' work.
        gc.freeze()

    def answer(self, rows: list[Prepared]) -> list[bytes | RowError]:
        """Per row, its output line or why it failed."""
        if self.arrays is not None:
            lines = self.arrays.answer_instances([row.instance for row in rows])
            if lines is not None:
                return [line(row) for line, row in zip(lines, rows)]
        out: list[bytes | RowError | None] = [None] * len(rows)
        values: list = [None] * len(rows)
        for i, row in enumerate(rows):
            try:
                values[i] = decoded(row.instance, self.input_names) or to_value(row.instance)
            except (ValueError, TypeError) as e:       # a CSV cell of "nan", say: no JSON value
                out[i] = RowError(grpc.StatusCode.INVALID_ARGUMENT, f"instance: {e}")
        pending = [i for i in range(len(rows)) if out[i] is None]
        while pending:
            try:
                answers = self._call([values[i] for i in pending])
            except Exception as e:  # noqa: BLE001 - a row's failure is that row's, never the job's
                named = _row_named(e, len(pending))
                if named is not None:
                    out[pending.pop(named)] = _row_error(e)
                    continue
                if len(pending) > 1:
                    for i in pending:
                        out[i] = self._alone(values[i], rows[i])
                else:
                    out[pending[0]] = _row_error(e)
                break
            for i, line in zip(pending, answers):
                out[i] = line(rows[i])
            break
        return out

    def _alone(self, value, row: Prepared) -> bytes | RowError:
        try:
            (prediction, explanation), = self._plane([value])
        except Exception as e:  # noqa: BLE001 - as above
            return _row_error(e)
        return self._line(prediction, explanation, row)

    def _call(self, values: list) -> list[Callable[[Prepared], bytes | RowError]]:
        """Per value, what writes its row's line: from the batch's arrays where the job has an
        array path and it answers this batch, else from the data plane's answers."""
        if self.arrays is not None:
            lines = self.arrays.answer(values)
            if lines is not None:
                return lines
        return [functools.partial(self._line, prediction, explanation)
                for prediction, explanation in self._plane(values)]

    def _plane(self, values: list) -> list[tuple[Any, Any]]:
        """(prediction, explanation) per value: the data plane's Explain (its answers carry the model's
        predictions; an index-only model's none), or its Predict for predictions only."""
        async def call():
            if self.explained:
                return [(e.prediction, e) for e in await self.plane.explain(self.model_id, values, self.override, None)]
            return [(p, None) for p in await self.plane.predict(self.model_id, values, None)]
        return self.loop.run_until_complete(call())

    def _line(self, prediction, explanation, row: Prepared) -> bytes | RowError:
        line = {row.shown_as: row.shown}
        try:
            if prediction is not None:
                line["prediction"] = to_python(prediction)
            if explanation is not None:
                message = vertex.Explanation()
                write_vertex_explanation(explanation, message)
                line["explanation"] = message_dict(message)
            return dumps_line(line)
        except ValueError as e:        # a model output of NaN or infinity: JSON has no such number
            return RowError(grpc.StatusCode.INTERNAL, f"the answer cannot be written as JSON: {e}")

    def close(self) -> None:
        if self.arrays is not None:
            self.arrays.close()
        self.manager.unload(self.model_id)
        self.loop.run_until_complete(self.engine.close())
        self.loop.close()
        shutil.rmtree(self._cache, ignore_errors=True)


def error_line(shown_as: str, shown, error: RowError) -> bytes:
    """A failed row's line in the errors files: the row and a google.rpc.Status of code and message."""
    return json.dumps({shown_as: shown, "error": {"code": error.code.value[0], "message": error.message}}).encode()


def _row_named(error: Exception, count: int) -> int | None:
    """The row (of `count`) a data plane error names by its field "instances[i]...", else None."""
    match = _ROW.match(getattr(error, "field", None) or "")
    if match is None or not isinstance(error, ExplaindError):
        return None
    i = int(match.group(1))
    return i if i < count else None


def _row_error(error: Exception) -> RowError:
    if isinstance(error, ExplaindError):
        field = _ROW.sub("instance", error.field or "")
        return RowError(error.code, f"{field}: {error.message}" if field else error.message)
    return RowError(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")
