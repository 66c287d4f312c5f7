"""Server settings: each one a flag of `explaind serve` and an EXPLAIND_* variable,
declared once below with its group, its help text and its check.

Precedence: command-line flag, then environment variable, then the default.
`resolve` parses and checks every value it is given; one that does not parse
or fails its check raises SettingsError, a one-line message naming the flag,
and `explaind serve` exits with status 2. Settings built in code
(`Settings(port=0)`) are not checked: tests and embedders say what they mean.

Standard library only: the client's CLI builds `explaind serve --help` from
this module without the server's packages.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
from typing import Callable

# Groups, in --help order: title -> what they hold.
GROUPS = {
    "serving": "ports, processes, batching and hardware of the serving path",
    "limits": "bounds on calls, requests and uploads",
    "store": "where models, indexes and operations are kept",
    "build": "where and how uploads and updates are built",
    "batch": "batch explanation jobs, run on the build runners (docs/batch.md)",
    "security": "TLS, credentials and what callers may do (docs/security.md)",
    "vertex": "Vertex AI's REST API",
    "observability": "metrics and logs",
}
MAX_PORT = 65535
MAX_GRPC_MESSAGE = 2**31 - 1      # gRPC's channel options are C ints
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class SettingsError(ValueError):
    """A setting that cannot be used: the daemon does not start (exit status 2)."""


# -- checks: a value -> None when fine, else what is wrong ---------------------

Check = Callable[[object], "str | None"]


def at_least(low) -> Check:
    return lambda v: None if v >= low else f"must be at least {low}"


def port_number(low: int = 0) -> Check:
    return lambda v: None if low <= v <= MAX_PORT else f"must be a port number, {low} to {MAX_PORT}"


def between(low, high) -> Check:
    return lambda v: None if low <= v <= high else f"must be between {low} and {high}"


def above(low) -> Check:
    return lambda v: None if v > low else f"must be greater than {low}"


def one_of(*choices: str, fold_case: bool = False) -> Check:
    def check(v):
        value = v.upper() if fold_case else v
        return None if value in choices else f"must be one of {', '.join(choices)}"
    return check


def not_empty(v) -> str | None:
    return None if str(v).strip() else "must not be empty"


def setting(default, help: str, group: str, check: Check | None = None, repeatable: bool = False,
            metavar: str | None = None):
    """A Settings field: `help` reaches `explaind serve --help`; `check` runs in resolve()."""
    assert group in GROUPS, group
    return dataclasses.field(default=default, metadata={
        "help": help, "group": group, "check": check, "repeatable": repeatable, "metavar": metavar})


@dataclasses.dataclass(frozen=True)
class Settings:
    # -- serving --
    host: str = setting("[::]", "address the gRPC and REST ports listen on; [::] is every interface",
                        "serving", not_empty)
    port: int = setting(8500, "the gRPC port; 0 picks a free port (the chosen one is printed)", "serving", port_number())
    workers: int = setting(1, "serving processes sharing the ports (SO_REUSEPORT); 0: one per 2 cores when "
                              "serving on the CPU, one with a GPU (each worker loads every model)", "serving",
                           at_least(0))
    max_batch_size: int = setting(64, "instances per batched model run or index search", "serving", at_least(1))
    max_queue_delay_ms: float = setting(2.0, "how long a batch may wait for more instances before it runs, in "
                                             "milliseconds", "serving", at_least(0))
    max_queued: int = setting(4096, "instances waiting in one batcher; one more is answered RESOURCE_EXHAUSTED",
                              "serving", at_least(1))
    search_threads: int = setting(0, "batches searched at once; 0: one per core of the process (its share of "
                                     "the cores with --workers)", "serving", at_least(0))
    index_threads: int = setting(0, "cores one CPU search spreads over (FAISS OpenMP, BLAS); 0: the process's "
                                    "cores but one, left to its event loop (at least 1)", "serving", at_least(0))
    rerank_reads: str = setting("auto", "how a compressed index's re-rank reads its candidates' full vectors: "
                                        "mapped (through the page cache, 4 KiB pages), direct (O_DIRECT, only "
                                        "the 512-byte blocks of the rows: less from disk, but every read goes "
                                        "to disk) or auto (direct for a model whose vectors exceed half this "
                                        "process's memory, else mapped)", "serving",
                                one_of("auto", "mapped", "direct"), metavar="auto|mapped|direct")
    use_gpu: str = setting("auto", "where indexes are searched: auto (a GPU when FAISS sees one), yes (a GPU; "
                                   "the CPU with a warning when there is none), no (the CPU)",
                           "serving", one_of("auto", "yes", "no"), metavar="auto|yes|no")
    max_connection_age_seconds: float = setting(
        0.0, "close each client connection after this long, so clients spread over new replicas (set it in "
             "Kubernetes); 0: never", "serving", at_least(0))
    shutdown_grace_seconds: float = setting(20.0, "on SIGTERM, how long calls in flight may take to finish",
                                            "serving", at_least(0))
    # -- limits --
    max_concurrent_calls: int = setting(
        1024, "calls handled at once by one process, over gRPC and REST together (health and reflection "
              "aside); one more is answered RESOURCE_EXHAUSTED (HTTP 429) at once", "limits", at_least(1))
    max_instances_per_request: int = setting(1024, "instances in one Explain or Predict request", "limits",
                                             at_least(1))
    max_neighbor_count: int = setting(1000, "neighbors one instance may ask for", "limits", at_least(1))
    max_crowding_count: int = setting(1000, "the largest crowding count a request may give", "limits", at_least(1))
    max_restrict_tokens: int = setting(1000, "tokens in one request's namespace restrictions", "limits",
                                       at_least(0))
    max_message_bytes: int = setting(64 * 1024 * 1024, "the largest gRPC message or REST body, in bytes",
                                     "limits", between(1, MAX_GRPC_MESSAGE))
    max_examples_per_model: int = setting(100_000_000, "examples in one model's data set; more fails the build "
                                                       "with RESOURCE_EXHAUSTED", "limits", at_least(1))
    max_upload_data_gb: float = setting(256.0, "uncompressed data one pass of a build may read, in GB; more fails "
                                               "the build with RESOURCE_EXHAUSTED; 0: no bound", "limits",
                                        at_least(0))
    max_concurrent_uploads: int = setting(16, "uploads running or queued on a replica; one more is answered "
                                              "RESOURCE_EXHAUSTED", "limits", at_least(1))
    update_max_remove_ids: int = setting(1_000_000, "ids one UpdateExplanationDataset may remove", "limits",
                                         at_least(0))
    # -- store --
    store: str = setting("./explaind-store", "where models, indexes and operations are kept: a folder, or "
                                             "s3://bucket/prefix or gs://bucket/prefix", "store", not_empty)
    cache_dir: str = setting("", "local copies of indexes; empty: a folder in the temporary directory", "store")
    store_poll_seconds: float = setting(2.0, "how often a replica looks for published and deleted models",
                                        "store", above(0))
    store_attempts: int = setting(4, "tries of one store request on transient errors, the first included",
                                  "store", at_least(1))
    store_timeout_seconds: float = setting(10.0, "the limit of one object-store request (S3); 0: the client's "
                                                 "default", "store", at_least(0))
    # -- build --
    build_runner: str = setting("local", "where builds run: local (a child process per build), ray (the "
                                         "embedding stage on a Ray cluster) or thread (in this process)", "build",
                                metavar="local|ray|thread")
    build_memory_limit: str = setting("auto", "a build process's resident memory: 8Gi, 8G or bytes; auto: 80% "
                                              "of the container's memory (else the machine's); 0: none", "build")
    build_spare_process: bool = setting(True, "keep a build process started ahead (TensorFlow imported), so "
                                              "uploads start at once, for its idle memory", "build")
    build_workers: int = setting(1, "builds run at once on a replica", "build", at_least(1))
    embed_batch_size: int = setting(256, "examples per model run while a build embeds its data", "build",
                                    at_least(1))
    stage_data_max_gb: float = setting(4.0, "remote text data (JSONL, CSV, TFRecord) up to this size is copied to "
                                            "local disk once per build instead of read twice; 0: never", "build",
                                       at_least(0))
    heartbeat_seconds: float = setting(2.0, "how often a build writes its progress", "build", above(0))
    heartbeat_timeout_seconds: float = setting(30.0, "a build silent for this long is taken over or failed",
                                               "build", above(0))
    retrain_added_fraction: float = setting(0.3, "an update recommends retraining a compressed index once "
                                                 "updates added this share of its examples", "build", at_least(0))
    ray_address: str = setting("", "the Ray cluster of --build-runner ray: its GCS host:port, or auto", "build")
    ray_workers: int = setting(0, "embedding actors; 0: one per GPU, else one per --ray-cpus-per-worker",
                               "build")
    ray_cpus_per_worker: float = setting(1.0, "CPUs of one embedding actor", "build")
    ray_gpus_per_worker: float = setting(-1.0, "GPUs of one embedding actor; -1: one where the cluster has GPUs, "
                                               "else none", "build")
    ray_batch_size: int = setting(4096, "examples per actor call and per embedding shard", "build")
    # -- batch --
    batch_workers: int = setting(1, "batch jobs running at once on a replica (more wait, QUEUED)", "batch",
                                 at_least(1))
    max_concurrent_batch_jobs: int = setting(16, "batch jobs running or queued on a replica; one more is answered "
                                                 "RESOURCE_EXHAUSTED", "batch", at_least(1))
    batch_size: int = setting(1024, "rows per model run of a batch job (a job's batch size overrides it, up to "
                                   "--max-instances-per-request)", "batch", at_least(1))
    batch_rows_per_file: int = setting(100_000, "rows per results or errors file of a batch job", "batch",
                                       at_least(1))
    batch_max_failed_fraction: float = setting(0.1, "a batch job fails once more than this fraction of its rows "
                                                    "failed (a job's own fraction overrides it)", "batch",
                                               between(0, 1))
    # -- security --
    tls_cert_file: str = setting("", "PEM certificate chain: with --tls-key-file, gRPC and REST over TLS "
                                     "(reloaded when the files change)", "security")
    tls_key_file: str = setting("", "PEM private key of --tls-cert-file", "security")
    tls_client_ca_file: str = setting("", "mutual TLS: clients must present a certificate signed by this CA",
                                      "security")
    metrics_tls: bool = setting(False, "serve /metrics over TLS too, with the same files (and client CA)",
                                "security")
    health_port: int = setting(-1, "a plaintext port serving only grpc.health.v1 (probes that cannot speak "
                                   "TLS); 0 picks a free port; -1: none", "security", port_number(low=-1))
    auth_tokens_file: str = setting("", "bearer tokens and their roles (admin | predict): a file or a Secret's "
                                        "folder", "security")
    auth_client_identities_file: str = setting("", "client-certificate identities and their roles, same format "
                                                   "(needs --tls-client-ca-file)", "security")
    disable_model_uploads: bool = setting(False, "refuse upload, update, delete and cancel: a read-only serving "
                                                 "replica", "security")
    disable_reflection: bool = setting(False, "do not register gRPC server reflection", "security")
    allowed_uri_prefix: str = setting("", "the only places uploads may read (repeat the flag, or separate with "
                                          "commas); empty: anywhere", "security", repeatable=True)
    # -- vertex --
    http_port: int = setting(8080, "Vertex AI's REST API (upload, operations, explain, predict); 0: off",
                             "vertex", port_number())
    vertex_endpoints: str = setting("", "Vertex endpoint -> model mapping: a JSON or YAML file, or inline JSON; "
                                        "empty: an endpoint's id is its model's id", "vertex")
    # -- observability --
    metrics_port: int = setting(8501, "the Prometheus /metrics port; 0 picks a free port", "observability", port_number())
    log_level: str = setting("INFO", "the lowest level logged: " + ", ".join(LOG_LEVELS), "observability",
                             one_of(*LOG_LEVELS, fold_case=True), metavar="LEVEL")
    log_json: bool = setting(True, "one JSON object per log line; false: text for people at a terminal",
                             "observability")
    access_log_sample: float = setting(1.0, "the share of calls written to the access log, 0 to 1 (one in "
                                            "round(1/x), each line with its `sample`); calls the server failed "
                                            "are always written; below 1 saves the event loop's time at "
                                            "thousands of calls a second (metrics count every call)",
                                       "observability", between(0, 1))


def use_gpu(settings: Settings) -> bool | None:
    """--use-gpu: yes -> True, no -> False, auto -> None (the index decides from faiss.get_num_gpus())."""
    return {"yes": True, "no": False}.get(settings.use_gpu)


def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


def env_of(name: str) -> str:
    return "EXPLAIND_" + name.upper()


def _kind(field: dataclasses.Field) -> str:
    return field.type if isinstance(field.type, str) else field.type.__name__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One --flag per setting, under its group; every value is read as text and
    parsed by resolve(), so flags and variables share one parser and one message."""
    groups = {name: parser.add_argument_group(f"{name} settings", text) for name, text in GROUPS.items()}
    for f in dataclasses.fields(Settings):
        kind = _kind(f)
        extra = {"action": "append"} if f.metadata["repeatable"] else \
            {"nargs": "?", "const": "true"} if kind == "bool" else {}     # a bare boolean flag means true
        default = "true" if f.default is True else "false" if f.default is False else repr(f.default)
        groups[f.metadata["group"]].add_argument(
            flag_of(f.name), dest=f.name, default=None, **extra,
            metavar=f.metadata["metavar"] or {"str": "TEXT", "bool": "BOOL", "int": "INT", "float": "NUMBER"}[kind],
            help=f"{f.metadata['help']} (default {default}; env {env_of(f.name)})".replace("%", "%%"))


def parse_value(text: str, field: dataclasses.Field):
    """`text` as the field's type; ValueError says what was expected."""
    kind = _kind(field)
    value = str(text).strip()
    if kind == "bool":
        if value.lower() in TRUE:
            return True
        if value.lower() in FALSE:
            return False
        raise ValueError(f"must be true or false (or {'/'.join(TRUE[:1] + TRUE[2:])}, "
                         f"{'/'.join(FALSE[:1] + FALSE[2:])})")
    if kind == "int":
        try:
            return int(value)
        except ValueError:
            raise ValueError("must be a whole number") from None
    if kind == "float":
        try:
            number = float(value)
        except ValueError:
            raise ValueError("must be a number") from None
        if not math.isfinite(number):
            raise ValueError("must be a finite number")
        return number
    return str(text)


def resolve(args: argparse.Namespace | None = None, environ: dict | None = None) -> Settings:
    """The settings from flags (`args`), then `environ`, then the defaults; SettingsError
    names the first value that does not parse or fails its check."""
    environ = os.environ if environ is None else environ
    values = {}
    for f in dataclasses.fields(Settings):
        flag_value = getattr(args, f.name, None) if args is not None else None
        if isinstance(flag_value, list):
            flag_value = ",".join(flag_value)
        if flag_value is not None:
            source, text = flag_of(f.name), flag_value
        elif env_of(f.name) in environ:
            source, text = f"{env_of(f.name)} ({flag_of(f.name)})", environ[env_of(f.name)]
        else:
            continue
        try:
            value = parse_value(text, f)
            problem = f.metadata["check"](value) if f.metadata["check"] else None
        except ValueError as e:
            problem = str(e)
        if problem:
            raise SettingsError(f"{source} {problem}, got {_shown(text)}")
        values[f.name] = value
    return Settings(**values)


def _shown(text) -> str:
    """A value as the message quotes it: bounded, one line."""
    shown = repr(str(text))
    return shown if len(shown) <= 80 else shown[:77] + "..."
