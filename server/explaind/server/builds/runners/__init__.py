"""Build runners: where an upload's recipe runs.

  local   (default) a child process per build, under --build-memory-limit (local.py, child.py)
  ray     the same child process is a Ray driver; the embedding stage runs as Ray Data on the
          cluster at --ray-address (ray_embedding.py)
  thread  a thread of the serving process, as before the runners (thread.py); daemon-wide only

A runner takes a BuildRequest from a job (request.py: the BuildTask to run,
the job's progress and its cancel) and returns a BuildOutput (outcome.py), the
index's files in the task's out_dir; the job keeps owning the operation:
its record, heartbeats, publish. Any recipe runs under any runner, so a task
(its recipe and options too) must pickle; the build process speaks the typed
messages of messages.py.

The daemon's runner (--build-runner) can be overridden per upload with the
model label explaind.dev/build-runner: local or ray.
"""
from __future__ import annotations

from ...errors import FailedPrecondition, InvalidArgument
from .local import BuildProcesses, ProcessRunner
from .memory import parse_memory_limit
from .ray_embedding import RayConfig
from .thread import ThreadRunner

LOCAL, RAY, THREAD = "local", "ray", "thread"
RUNNERS = (LOCAL, RAY, THREAD)
RUNNER_LABEL = "explaind.dev/build-runner"
LABEL_FIELD = f'model.labels["{RUNNER_LABEL}"]'


def check_settings(settings) -> None:
    """ValueError naming the flag when a runner setting is wrong (`explaind serve` checks at start)."""
    if settings.build_runner not in RUNNERS:
        raise ValueError(f"--build-runner must be one of {', '.join(RUNNERS)}, got {settings.build_runner!r}")
    parse_memory_limit(settings.build_memory_limit)
    ray_config(settings)


def ray_config(settings) -> RayConfig | None:
    if not (settings.ray_address or settings.build_runner == RAY):
        return None
    ray = RayConfig(address=settings.ray_address, workers=settings.ray_workers,
                    cpus_per_worker=settings.ray_cpus_per_worker, gpus_per_worker=settings.ray_gpus_per_worker,
                    batch_size=settings.ray_batch_size)
    ray.check()
    return ray


def make_runners(settings) -> dict:
    """The runners this daemon offers, by name; ValueError (at start) on a bad setting."""
    check_settings(settings)
    memory_limit = parse_memory_limit(settings.build_memory_limit)
    logs = {"log_level": settings.log_level, "log_json": settings.log_json}
    processes = BuildProcesses(spare=settings.build_spare_process)
    runners = {LOCAL: ProcessRunner(memory_limit, processes, **logs)}
    if settings.build_runner == THREAD:
        runners[THREAD] = ThreadRunner()
    ray = ray_config(settings)
    if ray is not None:
        runners[RAY] = ProcessRunner(memory_limit, processes, ray=ray, **logs)
    return runners


def close_runners(runners: dict) -> None:
    """Stops the spare build process (builds themselves are cancelled by their jobs)."""
    for runner in runners.values():
        processes = getattr(runner, "processes", None)
        if processes is not None:
            processes.close()


def choose_runner(labels, default: str, available) -> str:
    """The upload's runner: its explaind.dev/build-runner label, else the daemon's."""
    if RUNNER_LABEL not in labels:
        return default
    value = labels[RUNNER_LABEL]
    if value not in (LOCAL, RAY):
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise InvalidArgument(f"must be {LOCAL} or {RAY}, got {shown!r}", field=LABEL_FIELD)
    if value not in available:
        raise FailedPrecondition(f"this daemon has no Ray cluster: start it with --ray-address to build with {RAY}",
                                 field=LABEL_FIELD)
    return value
