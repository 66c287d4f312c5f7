"""The build process: `python -m explaind.server.builds.runners.child FD [--spare]`.

The serving process (runners/local.py) starts it per build, sends it a
ChildPayload over the socket FD and reads back progress messages and the
outcome:

  ("stage", stage)                  the recipe entered a stage
  ("examples", embedded, total)     progress, at most every PROGRESS_SECONDS
  ("done", BuildOutput)             the index is saved in payload.out_dir
  ("failed", error class, message, field)   an ExplaindError (named in errors.py)
  ("crashed", exception type, message)      any other exception

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

from .outcome import ChildPayload

log = logging.getLogger(__name__)
PROGRESS_SECONDS = 0.2


class ChildProgress:
    """The recipe's Progress: forwards stages at once, example counts at most every PROGRESS_SECONDS."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self._last = 0.0

    def stage(self, stage: int) -> None:
        self.conn.send(("stage", int(stage)))

    def examples(self, embedded: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last >= PROGRESS_SECONDS or embedded >= total:
            self._last = now
            self.conn.send(("examples", int(embedded), int(total)))


def run(payload: ChildPayload, progress) -> object:
    from explaind.v1 import model_pb2
    from .outcome import run_recipe

    model = model_pb2.Model.FromString(payload.model)
    if payload.ray is None:
        return run_recipe(payload.recipe, model, progress, payload.options, payload.out_dir, payload.build_id)
    from .ray_embedding import RayEmbedder, ray_session
    with ray_session(payload.ray, payload.operation) as session:
        # Ray workers read the data where it is: nothing is staged on this machine's disk.
        options = dataclasses.replace(payload.options, stage_max_bytes=0, embedder=RayEmbedder(
            payload.ray, session, payload.store_url, payload.shard_prefix))
        return run_recipe(payload.recipe, model, progress, options, payload.out_dir, payload.build_id)


def main(argv: list[str]) -> int:
    conn = Connection(int(argv[0]))
    _volunteer_for_the_oom_killer()
    if "--spare" in argv[1:]:
        _preload_tensorflow()
    try:
        payload: ChildPayload = conn.recv()
    except (EOFError, OSError):
        return 0        # a spare the daemon no longer needs
    from ...errors import ExplaindError
    from ...logging_setup import configure_logging

    configure_logging(payload.log_level, json_format=payload.log_json)
    threading.Thread(target=_exit_with_parent, args=(conn,), name="parent-watch", daemon=True).start()
    signal.signal(signal.SIGTERM, _stop)
    try:
        output = run(payload, ChildProgress(conn))
    except ExplaindError as e:
        # By the nearest class errors.py defines (the store's StoreUnavailable is an Unavailable).
        named = next(c for c in type(e).__mro__ if c.__module__ == ExplaindError.__module__)
        conn.send(("failed", named.__name__, e.message, e.field))
        return 0
    except Exception as e:  # noqa: BLE001 - reported to the job, which fails the operation with it
        log.exception("build failed", extra={"operation": payload.operation})
        conn.send(("crashed", type(e).__name__, str(e)))
        return 0
    conn.send(("done", output))
    return 0


def _preload_tensorflow() -> None:
    """A spare imports TensorFlow before its payload comes, while nothing waits for it (the
    build code, FAISS and the readers come with outcome.py, imported above). A build
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
