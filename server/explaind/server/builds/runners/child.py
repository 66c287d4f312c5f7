"""The build process: `python -m explaind.server.builds.runners.child FD [--spare]`.

The serving process (runners/local.py) starts it per build, sends it a
ChildPayload over the socket FD and reads back progress and the outcome, as
the dataclasses of messages.py: example counts at most every PROGRESS_SECONDS.

It exits when the serving process goes away (its socket closes) and stops on
SIGTERM (a cancel), and it volunteers to be the first process the kernel's
out-of-memory killer takes, before the replica it builds for.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection

from ...errors import ExplaindError
# With these come the build code, FAISS and the readers (recipes.py, index/): a spare has
# them imported before its payload comes.
from .messages import BuildCrashed, BuildDone, BuildFailed, ChildPayload, ExamplesProgress, RowsProgress, \
    StageReached
from .outcome import BuildOutput, run_recipe

log = logging.getLogger(__name__)
PROGRESS_SECONDS = 0.2


class ChildProgress:
    """The recipe's Progress: forwards stages at once, example counts at most every PROGRESS_SECONDS."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self._last = 0.0

    def stage(self, stage: int) -> None:
        self.conn.send(StageReached(int(stage)))

    def examples(self, embedded: int, total: int) -> None:
        if self._due(embedded >= total):
            self.conn.send(ExamplesProgress(int(embedded), int(total)))

    def rows(self, done: int, failed: int, total: int) -> None:
        if self._due(done == 0 or done >= total):
            self.conn.send(RowsProgress(int(done), int(failed), int(total)))

    def _due(self, always: bool) -> bool:
        now = time.monotonic()
        if always or now - self._last >= PROGRESS_SECONDS:
            self._last = now
            return True
        return False


def run(payload: ChildPayload, progress) -> BuildOutput:
    task = payload.task
    run_here = getattr(task, "run_in_process", None)
    if run_here is not None:
        return run_here(progress, payload.ray)       # a task of its own kind (a batch job's)
    if payload.ray is None:
        return run_recipe(task, progress)
    from .ray_embedding import RayEmbedder, ray_session
    with ray_session(payload.ray, task.operation) as session:
        # Ray workers read the data where it is: nothing is staged on this machine's disk.
        options = dataclasses.replace(task.options, stage_max_bytes=0, embedder=RayEmbedder(
            payload.ray, session, task.store_uri, task.shard_prefix))
        return run_recipe(dataclasses.replace(task, options=options), progress)


def main(argv: list[str]) -> int:
    conn = Connection(int(argv[0]))
    _volunteer_for_the_oom_killer()
    if "--spare" in argv[1:]:
        _preload_tensorflow()
    try:
        payload: ChildPayload = conn.recv()
    except (EOFError, OSError):
        return 0        # a spare the daemon no longer needs
    from ...logging_setup import configure_logging

    configure_logging(payload.log_level, json_format=payload.log_json)
    threading.Thread(target=_exit_with_parent, args=(conn,), name="parent-watch", daemon=True).start()
    signal.signal(signal.SIGTERM, _stop)
    try:
        output = run(payload, ChildProgress(conn))
    except ExplaindError as e:
        conn.send(BuildFailed.of(e))
        return 0
    except Exception as e:  # noqa: BLE001 - reported to the job, which fails the operation with it
        log.exception("build failed", extra={"operation": payload.task.operation})
        conn.send(BuildCrashed(type(e).__name__, str(e)))
        return 0
    conn.send(BuildDone(output))
    return 0


def _preload_tensorflow() -> None:
    """A spare imports TensorFlow before its payload comes, while nothing waits for it (the
    build code, FAISS and the readers come with the imports above). A build
    started cold imports it only if its model needs it."""
    from ...runtime.tensorflow_check import tensorflow_available
    if tensorflow_available():
        import tensorflow as tf
        tf.function(lambda x: x + 1)(tf.constant(1.0))     # TensorFlow's first call initializes its runtime


def _stop(signum, frame):
    # A cancel: unwinds the recipe, so a Ray session shuts down and its actors go with it.
    raise SystemExit(128 + signum)


def _exit_with_parent(conn: Connection) -> None:
    """The serving process never writes after the payload: EOF means it is gone."""
    try:
        conn.recv()
    except (EOFError, OSError):
        pass
    os._exit(70)


def _volunteer_for_the_oom_killer() -> None:
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass   # not Linux, or /proc read-only: the memory limit still applies


if __name__ == "__main__":
    code = main(sys.argv[1:])
    # The outcome is sent (or there is none to send): skip the interpreter's teardown, which
    # with TensorFlow loaded takes seconds and holds the build's memory meanwhile.
    logging.shutdown()
    sys.stderr.flush()
    os._exit(code)
