"""A batch job's rows on a Ray cluster (--build-runner ray, or the job's label
explaind.dev/build-runner: ray). The build process is the Ray driver:

  from_items(files)                 one row per input file, with its first row's position
  map_batches(read_rows)            tasks: the file's rows (rows.py), pickled in batches of
                                    --ray-batch-size
  map_batches(ExplainRows, actors)  an actor pool: each actor loads the model and its index once
                                    (explainer.py, on a GPU where the cluster has them), answers its
                                    batches as the local runner does (run.answer_batch) and writes
                                    them as parts into the staging folder, named by first row

The driver only counts what comes back (and stops the job once too many rows
failed); the parts sort in data set order, so the published files hold what
the local runner writes, in the same order. The input files and the output
prefix must be reachable from the workers (s3://, gs://, or a shared file
system), as a Ray build's data and store are.
"""
from __future__ import annotations

import json
import logging
import pickle

import numpy as np

from ..builds.runners.ray_embedding import RayConfig, actor_cores, actor_pool, explaind_error, \
    limit_tensorflow_threads, ray_session
from ..security import uris
from .explainer import RowExplainer
from .layout import ERRORS, RESULTS, staged_folder
from .rows import InputFiles
from .run import answer_batch, batches
from .tally import Tally, TooManyFailures
from .task import BatchOutput, BatchTask, ErrorKind
from .writer import PartWriter

log = logging.getLogger(__name__)


def run_on_ray(task: BatchTask, progress, config: RayConfig) -> BatchOutput:
    import ray

    uris.install(uris.UriPolicy(task.options.allowed_uri_prefixes))
    files = []
    offset = 0
    for path in task.paths:
        count = InputFiles((path,), task.instances_format).count()
        files.append({"path": path, "offset": offset})
        offset += count
    total = offset
    if total == 0:
        from ..errors import InvalidArgument
        raise InvalidArgument("the input has no rows", field="input_config")
    tally = Tally(total, task.options.max_failed_fraction)
    progress.rows(0, 0, total)
    blob = pickle.dumps(task, protocol=5)
    with ray_session(config, task.operation) as session:
        workers, gpus = actor_pool(config, session)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.target_max_block_size = 1          # one batch per block: each goes to whichever actor is free
        # Reads take no CPU from the scheduler's books (as the Ray build's: runners/ray_embedding.py).
        read = ray.data.from_items(files, override_num_blocks=len(files)).map_batches(
            read_rows, batch_size=1, num_cpus=0,
            compute=ray.data.TaskPoolStrategy(size=max(1, min(len(files), workers))),
            fn_kwargs={"task": blob, "batch_size": config.batch_size})
        answered = read.map_batches(
            ExplainRows, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=config.cpus_per_worker, num_gpus=gpus, fn_constructor_kwargs={"task": blob})
        log.info("ray batch job started", extra={"operation": task.operation, "ray_job": session.job_id,
                                                 "files": len(files), "rows": total, "actors": workers})
        try:
            for row in answered.iter_rows():
                kinds = tuple(ErrorKind(**kind) for kind in json.loads(row["kinds"]))
                tally.merge(int(row["succeeded"]), kinds)
                progress.rows(tally.done, tally.failed, total)
        except TooManyFailures:              # the job's rule, applied here by tally.merge
            raise
        except Exception as e:  # noqa: BLE001 - Ray wraps what the tasks raised
            raise explaind_error(e) from None
    return tally.output()


def read_rows(items: dict, task: bytes, batch_size: int):
    """Ray Data task: one file's rows, as pickled lists of `batch_size` Rows."""
    job: BatchTask = pickle.loads(task)
    uris.install(uris.UriPolicy(job.options.allowed_uri_prefixes))
    for path, offset in zip(items["path"], items["offset"]):
        rows = InputFiles((str(path),), job.instances_format, job.options.file_max_bytes).rows(int(offset))
        for batch in batches(rows, batch_size):
            yield {"batch": np.array([pickle.dumps(batch, protocol=5)], dtype=object)}


class ExplainRows:
    """Ray Data actor: the model and its index loaded once; batches answered and written as parts."""

    def __init__(self, task: bytes):
        self.task: BatchTask = pickle.loads(task)
        uris.install(uris.UriPolicy(self.task.options.allowed_uri_prefixes))
        if self.task.model_record().model.artifact_uri:
            limit_tensorflow_threads()
        self.explainer = RowExplainer(self.task, cores=actor_cores())
        self.explainer.load()

    def __call__(self, batch: dict) -> dict:
        succeeded, kinds = [], []
        options = self.task.options
        for blob in batch["batch"]:
            rows = pickle.loads(blob)             # written by read_rows in this Ray job
            tally = Tally(len(rows), 1.0)         # counts only: the driver applies the job's rule
            with PartWriter(staged_folder(self.task.staging, RESULTS), options.rows_per_file) as results, \
                    PartWriter(staged_folder(self.task.staging, ERRORS), options.rows_per_file) as errors:
                for part in batches(iter(rows), options.batch_size):
                    answer_batch(part, self.task, self.explainer, results, errors, tally)
            succeeded.append(tally.succeeded)
            kinds.append(json.dumps([{"code": k.code, "message": k.message, "rows": k.rows} for k in tally.kinds()]))
        return {"succeeded": np.array(succeeded, dtype=np.int64), "kinds": np.array(kinds, dtype=object)}
