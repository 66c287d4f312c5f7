"""How a serving process spreads the cores it has: worker processes, the
threads of one CPU search, and the batches searched at once.

Every call costs the process's event loop (one thread, one core at most: gRPC,
parsing, admission, the response) about half a millisecond; an exact search
of 100k x 128 about as much a query on one core, in batches. So:

- `index_threads` (0: auto) is the OpenMP team of one CPU search: the cores
  of the process but one, which the event loop keeps. A wider team pays its
  synchronisation on every BLAS block (OpenBLAS spins with sched_yield; FAISS
  sleeping waiters, OMP_WAIT_POLICY=PASSIVE, wake up each parallel region):
  0.51 ms of CPU a query with 2 threads against 0.44 with 1 (batches of 64,
  BLAS), and on a 2-core node a team of 2 takes the event loop's core away
  from it, which is what stretched the batch-1 tail (measured on 2 cores,
  100k x 128: p99 about 10 ms with both against 4.3 with one thread).
- `search_threads` (0: auto) is how many batches (of different models, or
  of calls that cannot share a search) run at once: one per core of the
  process; batches of one model and search shape run one after another
  (batching.py), so one model never has two teams at once.
- `workers` (0: auto) is one process per CORES_PER_WORKER cores on CPU
  serving (each process's event loop is a core of its own; its search gets
  the other), one process when indexes go to a GPU (each worker would hold
  its own copy of every index in GPU memory). The default stays 1: each
  worker loads every model in its own memory, and on 2 cores two workers
  measured more CPU a call (2.1 ms against 1.55, batches of 16 instead of 31).

The supervisor of `--workers` plans for the machine and hands each worker
its share (worker_command passes the planned threads); a worker then plans
with what it was given.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os

log = logging.getLogger(__name__)

# Cores one worker is planned for when --workers is 0 (auto): its event loop and one search thread.
CORES_PER_WORKER = 2


@dataclasses.dataclass(frozen=True)
class ThreadPlan:
    cores: int              # cores this process (or, for the supervisor, the machine) may use
    workers: int            # serving processes
    index_threads: int      # the OpenMP team of one CPU search
    search_threads: int     # batches searched at once (the engine's threads)


def available_cores(cgroup_root: str = "/sys/fs/cgroup") -> int:
    """The cores this process may run on: its CPU affinity, capped by the
    container's CPU quota (cgroup v2 cpu.max, or v1 cpu.cfs_quota_us), rounded up."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:         # not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_quota(cgroup_root)
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def _cgroup_quota(root: str) -> float | None:
    """The CPU quota in cores, None when there is none (or it cannot be read)."""
    try:
        with open(os.path.join(root, "cpu.max")) as f:            # v2: "<quota> <period>" or "max <period>"
            quota, period = f.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(root, "cpu", "cpu.cfs_quota_us")) as f:    # v1: -1 for none
            quota = int(f.read())
        with open(os.path.join(root, "cpu", "cpu.cfs_period_us")) as f:
            period = int(f.read())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def plan_threads(settings, cores: int | None = None, gpu: bool = False) -> ThreadPlan:
    """The plan for `settings` on `cores` (None: available_cores()); `gpu`: indexes
    go to a GPU. Values the settings give (non-zero) are kept as they are."""
    cores = cores or available_cores()
    workers = settings.workers or (1 if gpu else max(1, cores // CORES_PER_WORKER))
    per_worker = max(1, cores // workers)
    return ThreadPlan(cores=cores, workers=workers,
                      index_threads=settings.index_threads or max(1, per_worker - 1),
                      search_threads=settings.search_threads or per_worker)


def planned_settings(settings, plan: ThreadPlan):
    """`settings` with the plan's numbers in place of the zeros (auto) they held."""
    return dataclasses.replace(settings, workers=plan.workers, index_threads=plan.index_threads,
                               search_threads=plan.search_threads)


def apply(plan: ThreadPlan) -> None:
    """Process-wide, before the first search: the OpenMP and BLAS pools sized for
    one search, and batches of a flat index through BLAS."""
    from ..index.backend import limit_cpu_threads, use_blas_for_batches

    limit_cpu_threads(plan.index_threads)
    use_blas_for_batches()
    log.info("serving threads planned", extra=dataclasses.asdict(plan))


def serving_on_gpu(settings) -> bool:
    """Whether indexes go to a GPU: --use-gpu yes, or auto where FAISS sees one."""
    if settings.use_gpu == "no":
        return False
    from ..index.backend import gpu_available

    return gpu_available()
