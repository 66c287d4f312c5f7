"""--build-runner local (and the driver side of ray): each build in its own
child process (child.py), supervised from the serving process.

The supervisor forwards the child's stages and progress to the job (which
writes them into the operation and heart-beats), stops the child on a cancel
(SIGTERM, then SIGKILL after a grace period), kills it when its resident
memory (with its descendants') passes --build-memory-limit, and turns a child
that dies without an outcome (kill -9, a segfault, the kernel's OOM killer)
into an error naming the cause. The serving process never holds the data set,
the embeddings or the index: they live and die with the child.
"""
from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection

from ...errors import ExplaindError, ResourceExhausted
from ...serving.cpu import available_cores
from ..recipes import Progress
from .memory import format_bytes, tree_rss
from .messages import BuildCrashed, BuildDone, BuildFailed, ChildMessage, ChildPayload, ExamplesProgress, \
    RowsProgress, StageReached
from .outcome import BuildOutput
from .ray_embedding import RayConfig
from .request import BuildCancelled, BuildRequest

log = logging.getLogger(__name__)
POLL_SECONDS = 0.1
IMPORT_ALONGSIDE_MIN_CORES = 4


class BuildProcessDied(ExplaindError):
    """The build process ended without an outcome."""


class ProcessRunner:
    """--build-runner local, and ray when given a RayConfig (the build process is then a Ray driver)."""

    def __init__(self, memory_limit: int, processes: "BuildProcesses", *, log_level: str = "INFO",
                 log_json: bool = True, ray: RayConfig | None = None):
        self.memory_limit = memory_limit
        self.processes = processes
        self.log_level = log_level
        self.log_json = log_json
        self.ray = ray

    def run(self, request: BuildRequest) -> BuildOutput:
        payload = ChildPayload(request.task, log_level=self.log_level, log_json=self.log_json, ray=self.ray)
        child = self.processes.take()
        try:
            child.start(payload, self.memory_limit)
            return child.supervise(request.progress, request.cancel)
        finally:
            child.stop()
            self.processes.finished()


class BuildProcesses:
    """Starts build processes, keeping one spare ahead when asked (--build-spare-process):
    a spare imports TensorFlow and the build code while nothing waits for it, so an
    upload starts at once instead of after the import (about 5 s on a small machine).
    The first spare starts with the first build: a replica that only serves keeps none.

    The import keeps a core busy for seconds. On a node of IMPORT_ALONGSIDE_MIN_CORES
    or more, the next spare imports while the build that took the last one runs; on a
    smaller node that core is the build's, so the next spare waits for the build to end
    (measured on 2 cores: the import alongside took a sixth of a batch job's CPU)."""

    def __init__(self, spare: bool, stop_grace_seconds: float = 10.0, cores: int | None = None):
        self.keep_spare = spare
        self.stop_grace_seconds = stop_grace_seconds
        self.import_alongside = (cores or available_cores()) >= IMPORT_ALONGSIDE_MIN_CORES
        self._spare: BuildProcess | None = None
        self._lock = threading.Lock()
        self._closed = False

    def take(self) -> "BuildProcess":
        """A process for a build: the spare if it is alive, else a new one."""
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None and spare.proc.poll() is None:
            taken = spare
        else:
            if spare is not None:
                spare.stop()
            taken = BuildProcess(self.stop_grace_seconds, spare=False)
        if self.import_alongside:
            self.refill()
        return taken

    def finished(self) -> None:
        """A build ended: its cores are free for the next spare's import."""
        self.refill()

    @property
    def spare_alive(self) -> bool:
        with self._lock:
            return self._spare is not None and self._spare.proc.poll() is None

    def refill(self) -> None:
        """Starts the next spare, unless one is there."""
        with self._lock:
            if not self.keep_spare or self._closed or (self._spare is not None and self._spare.proc.poll() is None):
                return
            self._spare = BuildProcess(self.stop_grace_seconds, spare=True)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.stop()


class BuildProcess:
    """One child (child.py): started bare, it imports what builds need (TensorFlow too, as a
    spare), then waits for its payload."""

    def __init__(self, stop_grace_seconds: float, spare: bool):
        self.stop_grace_seconds = stop_grace_seconds
        self.memory_limit = 0
        self.operation = ""
        self.peak_rss = 0
        self.started = time.monotonic()
        ours, theirs = socket.socketpair()
        try:
            # Its stdout joins our stderr: the daemon's stdout carries only its ready line.
            self.proc = subprocess.Popen([sys.executable, "-m", "explaind.server.builds.runners.child",
                                          str(theirs.fileno())] + (["--spare"] if spare else []), pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                                         stdout=2, close_fds=True)
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())

    def start(self, payload: ChildPayload, memory_limit: int) -> None:
        self.memory_limit = memory_limit
        self.operation = payload.task.operation
        self.started = time.monotonic()
        self.conn.send(payload)
        log.info("build process started", extra={"operation": self.operation, "pid": self.proc.pid})

    def supervise(self, progress: Progress, cancel: threading.Event) -> BuildOutput:
        """Runs until the child hands over its outcome, forwarding its progress; raises what fails the build."""
        while True:
            if cancel.is_set():
                raise BuildCancelled()
            self._check_memory()
            if self.conn.poll(POLL_SECONDS):
                try:
                    message = self.conn.recv()
                except (EOFError, OSError):
                    raise self._died() from None
                outcome = self._handle(message, progress)
                if outcome is not None:
                    return outcome
            elif self.proc.poll() is not None and not self.conn.poll(0):
                raise self._died()

    def _handle(self, message: ChildMessage, progress: Progress) -> BuildOutput | None:
        match message:
            case StageReached(stage):
                progress.stage(stage)
            case ExamplesProgress(embedded, total):
                progress.examples(embedded, total)
            case RowsProgress(done, failed, total):
                progress.rows(done, failed, total)
            case BuildDone(output):
                self._wait(self.stop_grace_seconds)       # it exits right after: let it close its sessions
                return output
            case BuildFailed() | BuildCrashed():
                raise message.error()
        return None

    def _check_memory(self) -> None:
        rss = tree_rss(self.proc.pid)
        self.peak_rss = max(self.peak_rss, rss)
        if self.memory_limit and rss > self.memory_limit:
            self._kill()
            raise ResourceExhausted(
                f"the build process used {format_bytes(rss)} of memory, over --build-memory-limit "
                f"({format_bytes(self.memory_limit)}), and was stopped; give the daemon a higher limit or build "
                "this model with --build-runner ray")

    def _died(self) -> BuildProcessDied:
        code = self._wait(self.stop_grace_seconds)
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            cause = {
                "SIGKILL": "killed: by the kernel's out-of-memory killer when the machine or container ran out "
                           "of memory, or by an operator",
                "SIGSEGV": "a crash in native code (TensorFlow, FAISS or a custom op)",
                "SIGABRT": "aborted by native code (TensorFlow, FAISS or a custom op)",
                "SIGBUS": "a crash in native code (TensorFlow, FAISS or a custom op)",
            }.get(name, "stopped by a signal")
            what = f"died of {name} ({cause})"
        else:
            what = f"exited with code {code} without an outcome"
        return BuildProcessDied(f"the build process {what}; its peak memory was {format_bytes(self.peak_rss)}")

    def _wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def _kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self._wait(self.stop_grace_seconds)

    def stop(self) -> None:
        """Ends the child if it still runs (a cancel, an error here): SIGTERM lets a Ray
        driver take its actors down with it; SIGKILL after the grace period."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if self._wait(self.stop_grace_seconds) is None:
                self._kill()
        self.conn.close()
        if not self.operation:
            return      # a spare that never built
        log.info("build process ended", extra={
            "operation": self.operation, "pid": self.proc.pid, "exit_code": self.proc.returncode,
            "peak_rss_bytes": self.peak_rss, "seconds": round(time.monotonic() - self.started, 3)})
