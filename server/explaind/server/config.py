"""Server settings: each one a flag of `explaind serve` and an EXPLAIND_* variable.

Precedence: command-line flag, then environment variable, then the default.
"""
from __future__ import annotations

import argparse
import dataclasses
import os


@dataclasses.dataclass
class Settings:
    port: int = 8500
    metrics_port: int = 8501
    host: str = "[::]"
    store: str = "./explaind-store"
    cache_dir: str = ""                  # local copies of indexes; default: a folder in the temp dir
    log_level: str = "INFO"
    log_json: bool = True
    store_poll_seconds: float = 2.0       # how often replicas look for published/deleted models
    heartbeat_seconds: float = 2.0        # how often a build writes its progress
    heartbeat_timeout_seconds: float = 30.0  # a build silent for this long is taken over or failed
    build_workers: int = 1                # concurrent builds per replica
    embed_batch_size: int = 256           # examples per model run during a build
    stage_data_max_gb: float = 4.0        # remote text data copied to local disk once per build; 0 = never
    max_batch_size: int = 64              # instances per batched Explain model run / search
    max_queue_delay_ms: float = 2.0
    max_queued: int = 4096                # instances waiting in a batcher before RESOURCE_EXHAUSTED
    max_concurrent_calls: int = 1024
    max_instances_per_request: int = 1024
    max_neighbor_count: int = 1000
    max_crowding_count: int = 1000
    max_restrict_tokens: int = 1000
    max_message_bytes: int = 64 * 1024 * 1024
    max_connection_age_seconds: float = 0.0  # 0 = unlimited; set in Kubernetes so clients rebalance
    shutdown_grace_seconds: float = 20.0
    search_threads: int = 0               # batches searched at once; 0 = os.cpu_count()
    index_threads: int = 0                # cores one CPU search spreads over (FAISS OpenMP, BLAS); 0 = all
    use_gpu: str = "auto"                 # auto | yes | no
    workers: int = 1                      # serving processes sharing the port (SO_REUSEPORT)
    # Vertex AI compatibility
    http_port: int = 8080                 # Vertex AI's REST API (upload, operations, explain, predict); 0 = off
    vertex_endpoints: str = ""            # endpoint -> model mapping: a JSON or YAML file, or inline JSON;
                                          # empty: an endpoint's id is its model's id
    # Reliability
    store_attempts: int = 4               # tries of one store request on transient errors, the first included
    store_timeout_seconds: float = 10.0   # limit of one object-store (S3) request; 0 = the client's default
    # Security (docs/security.md)
    tls_cert_file: str = ""               # PEM chain; with tls_key_file: gRPC over TLS, reloaded when rotated
    tls_key_file: str = ""
    tls_client_ca_file: str = ""          # require client certificates signed by this CA (mTLS)
    metrics_tls: bool = False             # /metrics over TLS too, with the same files (and client CA)
    health_port: int = -1                 # plaintext port serving only grpc.health.v1 (probes); -1 = none
    auth_tokens_file: str = ""            # bearer token -> role (admin | predict): a file or a Secret folder
    auth_client_identities_file: str = ""  # client certificate subject/CN/SAN -> role, same format
    disable_model_uploads: bool = False   # refuse upload/update/delete/cancel: a read-only serving replica
    disable_reflection: bool = False
    allowed_uri_prefix: str = ""          # comma-separated (flag repeatable); empty = no restriction
    max_examples_per_model: int = 100_000_000
    max_upload_data_gb: float = 256.0     # uncompressed data one pass of a build may read; 0 = no bound
    max_concurrent_uploads: int = 16      # uploads running or queued on a replica; more: RESOURCE_EXHAUSTED
    # Build runners (builds/runners/): where an upload's build runs
    build_runner: str = "local"           # local: a child process per build | ray | thread: in this process
    build_memory_limit: str = "auto"      # a build process's resident memory: 8Gi, 8G, bytes; auto: 80% of the
                                          # container's (else the machine's); 0: none
    build_spare_process: bool = True      # keep a build process started ahead (TensorFlow imported): uploads
                                          # start at once, for the spare's idle memory
    ray_address: str = ""                 # Ray cluster for --build-runner ray: its GCS host:port, or auto
    ray_workers: int = 0                  # embedding actors; 0: one per GPU, else one per --ray-cpus-per-worker
    ray_cpus_per_worker: float = 1.0
    ray_gpus_per_worker: float = -1.0     # -1: one per actor where the cluster has GPUs, else none
    ray_batch_size: int = 4096            # examples per actor call and per shard
    # Compressed indexes and updates
    retrain_added_fraction: float = 0.3   # retrain_recommended once updates added this share of the examples
    update_max_remove_ids: int = 1_000_000  # ids one UpdateExplanationDataset may remove
    # Batch explanation jobs (docs/batch.md): run by the build runners
    batch_workers: int = 1                # batch jobs running at once per replica (more wait, QUEUED)
    max_concurrent_batch_jobs: int = 16   # batch jobs running or queued on a replica; more: RESOURCE_EXHAUSTED
    batch_size: int = 256                 # rows per model run of a job (a job's batch_size overrides)
    batch_rows_per_file: int = 100_000    # rows per results or errors file
    batch_max_failed_fraction: float = 0.1  # a job fails once more than this fraction of its rows failed


REPEATABLE = {"allowed_uri_prefix"}       # flags given several times; joined by commas


def use_gpu(settings: Settings) -> bool | None:
    """--use-gpu: yes -> True, no -> False, auto -> None (the index decides from faiss.get_num_gpus())."""
    return {"yes": True, "no": False}.get(settings.use_gpu)


def _env_name(field: str) -> str:
    return "EXPLAIND_" + field.upper()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One --flag per setting; defaults are resolved later so the env can fill them."""
    for f in dataclasses.fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        kind = f.type if isinstance(f.type, type) else {"int": int, "float": float, "str": str, "bool": str}[f.type]
        extra = {"action": "append"} if f.name in REPEATABLE else {"nargs": "?", "const": "true"} \
            if f.type in ("bool", bool) else {}     # a bare boolean flag means true
        parser.add_argument(flag, dest=f.name, type=kind, default=None, **extra,
                            help=f"(env {_env_name(f.name)}, default {f.default!r})")


def _parse(value: str, field: dataclasses.Field):
    kind = field.type if isinstance(field.type, str) else field.type.__name__
    if kind == "bool":
        return str(value).lower() in ("1", "true", "yes", "on")
    return {"int": int, "float": float, "str": str}[kind](value)


def resolve(args: argparse.Namespace | None = None, environ: dict | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    values = {}
    for f in dataclasses.fields(Settings):
        flag_value = getattr(args, f.name, None) if args is not None else None
        if isinstance(flag_value, list):
            flag_value = ",".join(flag_value)
        if flag_value is not None:
            values[f.name] = _parse(flag_value, f)
        elif _env_name(f.name) in environ:
            values[f.name] = _parse(environ[_env_name(f.name)], f)
    return Settings(**values)
