"""--build-runner ray: the embedding stage as Ray Data on a Ray cluster.

The build process (child.py) is the Ray driver. Over the data set's files it
runs one Ray Data pipeline:

  from_items(files)                     one row per file, with its first position in the data set
  map_batches(read_batches)             tasks: our readers, then prepare_batch (ids, restricts,
                                        inputs as tensors), one pickled PreparedBatch per row
  map_batches(EmbedShards, actors)      an actor pool: each actor loads the SavedModel once (on a
                                        GPU where the cluster has them), runs finish_batch and
                                        writes the batch to the store as a shard (shards.py)

and reads the shards back in data set order to build the index. So the
answers equal the local runner's: both run the same prepare and finish steps
on the same batches of records. A cancel ends the driver (SIGTERM): Ray Data
stops its actors, and Ray ends whatever the job still runs when the driver
disconnects. Data files and the store must be reachable from the workers
(s3://, gs://, or one shared file system). The driver must run on a Ray node
(Ray Data needs a core worker, which Ray Client, ray://, does not give it):
in Kubernetes a `ray start` sidecar joins each explaind pod to the cluster.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import pickle

import numpy as np

from ...errors import ExplaindError, FailedPrecondition, InvalidArgument, Unavailable
from ...methods import latent_source
from ...security import uris
from ...store.objects import ObjectStore
from .. import readers
from ..embedding import EmbeddedExamples, finish_batch, prepare_batch
from ..readers import DataPath
from .shards import read_shards, write_shard

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RayConfig:
    address: str                      # ray.init address: host:port of the GCS, or auto (a Ray node of this machine)
    workers: int = 0                  # embedding actors; 0: one per GPU, else one per cpus_per_worker CPUs
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = -1.0     # -1: one GPU per actor where the cluster has GPUs, else none
    batch_size: int = 4096            # examples per actor call and per shard

    def check(self) -> None:
        """At daemon start: every setting sane, and Ray installed."""
        if not self.address.strip():
            raise ValueError("--build-runner ray needs --ray-address (host:port of the Ray head's GCS, or auto)")
        if self.address.strip().startswith("ray://"):
            # Measured with Ray 2.60: Ray Data's executor needs a core worker, which a Ray Client
            # connection does not have ("'Worker' object has no attribute 'core_worker'").
            raise ValueError("--ray-address: Ray Data does not run through Ray Client (ray://); run a Ray node "
                             "beside the daemon (ray start --address=HEAD:6379) and use its GCS address or auto")
        if self.workers < 0 or self.cpus_per_worker <= 0 or self.batch_size < 1 \
                or not (self.gpus_per_worker == -1 or self.gpus_per_worker >= 0):
            raise ValueError("--ray-workers must be >= 0, --ray-cpus-per-worker > 0, --ray-batch-size >= 1 and "
                             "--ray-gpus-per-worker >= 0 (or -1: auto)")
        import importlib.util
        if importlib.util.find_spec("ray") is None:
            raise ValueError("--build-runner ray needs Ray: pip install 'explaind[ray]'")


@dataclasses.dataclass(frozen=True)
class RaySession:
    job_id: str
    cpus: float
    gpus: float


@contextlib.contextmanager
def ray_session(config: RayConfig, operation: str):
    import ray

    try:
        ray.init(address=config.address, namespace="explaind", log_to_driver=False, logging_level=logging.WARNING,
                 job_config=ray.job_config.JobConfig(metadata={"explaind-operation": operation}))
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise Unavailable(f"cannot reach the Ray cluster at {config.address!r} (--ray-address): {e}") from None
    try:
        resources = ray.cluster_resources()
        session = RaySession(job_id=ray.get_runtime_context().get_job_id(), cpus=float(resources.get("CPU", 0)),
                             gpus=float(resources.get("GPU", 0)))
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        log.info("ray session", extra={"operation": operation, "ray_job": session.job_id, "cpus": session.cpus,
                                       "gpus": session.gpus})
        yield session
    finally:
        ray.shutdown()


def actor_pool(config: RayConfig, session: RaySession) -> tuple[int, float]:
    """(actors, GPUs per actor) from the settings and what the cluster has."""
    gpus = config.gpus_per_worker
    if gpus < 0:
        gpus = 1.0 if session.gpus >= 1 else 0.0
    workers = config.workers
    if workers == 0:
        workers = int(session.gpus // gpus) if gpus else int(session.cpus // config.cpus_per_worker)
    return max(1, workers), gpus


class RayEmbedder:
    """The embedding stage on the cluster (the recipe's Embedder)."""

    def __init__(self, config: RayConfig, session: RaySession, store_url: str, shard_prefix: str):
        self.config = config
        self.session = session
        self.store_url = store_url
        self.shard_prefix = shard_prefix

    def pool(self) -> tuple[int, float]:
        return actor_pool(self.config, self.session)

    def embed(self, paths, latent, model, total, field, progress, first_default_id=0,
              matrix_path=None) -> EmbeddedExamples:
        import ray

        if total == 0:
            raise InvalidArgument("the data set has no examples", field=field)
        files, offset = [], 0
        for path in paths:
            count = readers.count_records([path])
            files.append({"path": str(path), "field": getattr(path, "field", None) or field,
                          "format": getattr(path, "data_format", None) or "", "offset": offset, "count": count})
            offset += count
        workers, gpus = self.pool()
        artifact = model.artifact_uri if latent is not None else ""
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        # Each row below is a whole batch of examples: one row per block, or Ray Data merges a
        # file's small blocks into one, which one actor then works through alone.
        context.target_max_block_size = 1
        # The reads take no CPU from the scheduler's books: actors that hold every CPU of the cluster
        # (the usual pool) would otherwise leave them none and wait on them forever. Their number is
        # bounded instead, and Ray Data's back-pressure keeps them as far ahead as the actors need.
        prepared = ray.data.from_items(files, override_num_blocks=len(files)).map_batches(
            read_batches, batch_size=1, num_cpus=0,
            compute=ray.data.TaskPoolStrategy(size=max(1, min(len(files), workers))),
            fn_kwargs={"input_names": latent.input_names if latent is not None else None,
                       "input_specs": latent.input_specs if latent is not None else None,
                       "batch_size": self.config.batch_size, "field": field,
                       "allowed_uri_prefixes": uris.policy().given, "first_default_id": first_default_id})
        shards = prepared.map_batches(
            EmbedShards, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=self.config.cpus_per_worker, num_gpus=gpus,
            fn_constructor_kwargs={"artifact_uri": artifact,
                                   "latent_space_source": latent_source(model.explanation_spec.metadata),
                                   "store_url": self.store_url, "prefix": self.shard_prefix, "field": field,
                                   "allowed_uri_prefixes": uris.policy().given})
        log.info("ray embedding started", extra={"ray_job": self.session.job_id, "files": len(files),
                                                 "examples": total, "actors": workers, "gpus_per_actor": gpus})
        objects = ObjectStore(self.store_url)
        try:
            done = 0
            try:
                for row in shards.iter_rows():
                    done += int(row["rows"])
                    progress.examples(done, total)
            except Exception as e:  # noqa: BLE001 - Ray wraps what the tasks raised
                raise explaind_error(e) from None
            return read_shards(objects, self.shard_prefix, total, field, matrix_path)
        finally:
            objects.delete_prefix(self.shard_prefix)


def read_batches(items: dict, input_names, input_specs, batch_size: int, field: str,
                 allowed_uri_prefixes: tuple[str, ...] = (), first_default_id: int = 0):
    """Ray Data task: one file's records, as pickled PreparedBatches of batch_size. It opens
    only what the daemon would (--allowed-uri-prefix), on whichever node it runs. Default
    ids continue from first_default_id (an update's), as the local embedder's do."""
    uris.install(uris.UriPolicy(allowed_uri_prefixes))
    for path, path_field, data_format, offset, count in zip(items["path"], items["field"], items["format"],
                                                             items["offset"], items["count"]):
        source = DataPath(str(path))
        source.field, source.data_format = str(path_field), (str(data_format) or None)
        position, end = int(offset), int(offset) + int(count)
        for batch in readers.iter_batches(readers.iter_records([source], input_names, source.field), batch_size):
            if position + len(batch) > end:
                raise InvalidArgument(f"{path} has more examples than when it was counted ({count}); it changed "
                                      "during the build", field=source.field)
            prepared = prepare_batch(batch, input_specs, position, field, first_default_id)
            position += len(batch)
            yield {"batch": np.array([pickle.dumps(prepared, protocol=5)], dtype=object)}
        if position != end:
            raise InvalidArgument(f"{path} has {position - int(offset)} examples, {count} when it was counted; it "
                                  "changed during the build", field=source.field)


class EmbedShards:
    """Ray Data actor: loads the model once, embeds prepared batches, writes each as a shard."""

    def __init__(self, artifact_uri: str, latent_space_source: str, store_url: str, prefix: str, field: str,
                 allowed_uri_prefixes: tuple[str, ...] = ()):
        uris.install(uris.UriPolicy(allowed_uri_prefixes))
        self.latent = None
        if artifact_uri:
            limit_tensorflow_threads()
            from ...runtime.saved_model import LatentModel
            self.latent = LatentModel.load(artifact_uri, latent_space_source)
        self.objects = ObjectStore(store_url)
        self.prefix = prefix
        self.field = field

    def __call__(self, batch: dict) -> dict:
        rows, keys = [], []
        for blob in batch["batch"]:
            prepared = pickle.loads(blob)      # written by read_batches in this Ray job
            vectors = finish_batch(prepared, self.latent, self.field)
            keys.append(write_shard(self.objects, self.prefix, prepared, vectors))
            rows.append(prepared.size)
        return {"rows": np.array(rows, dtype=np.int64), "shard": np.array(keys, dtype=object)}


def _assigned_cpus() -> float:
    """The CPUs Ray gave this actor (0 when none were asked for)."""
    import ray

    return ray.get_runtime_context().get_assigned_resources().get("CPU", 0)


def actor_cores() -> int:
    """The whole CPUs Ray gave this actor (at least 1)."""
    return max(1, int(math.floor(_assigned_cpus())))


def limit_tensorflow_threads() -> None:
    """TensorFlow sizes its thread pools to the machine; an actor gets only its share of it."""
    if _assigned_cpus() >= 1:
        import tensorflow as tf
        cores = actor_cores()
        try:
            tf.config.threading.set_intra_op_parallelism_threads(cores)
            tf.config.threading.set_inter_op_parallelism_threads(cores)
        except RuntimeError:
            pass   # TensorFlow already initialized in this worker


def explaind_error(error: BaseException) -> ExplaindError:
    """What a Ray task raised, as the domain error it was. Ray wraps it (sometimes twice, in a
    class that also subclasses the cause's): the innermost domain error is the original."""
    found = None
    seen = set()
    pending = [error]
    while pending:
        e = pending.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ExplaindError):
            found = e
        pending += [getattr(e, "cause", None), e.__cause__, e.__context__]
    if found is not None:
        cls = next(c for c in type(found).__mro__
                   if issubclass(c, ExplaindError) and c.__module__ == ExplaindError.__module__)
        return cls(getattr(found, "message", str(found)), field=getattr(found, "field", None))
    if "ActorDiedError" in type(error).__name__ or "OutOfMemoryError" in type(error).__name__:
        return FailedPrecondition(f"a Ray worker died during the embedding stage: {_first_line(error)}")
    return ExplaindError(f"the Ray embedding stage failed: {type(error).__name__}: {_first_line(error)}")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:500] if text else ""
