"""What every job behind a long-running operation shares (an upload's or update's
build, builds/job.py; a batch explanation job, batch/job.py): the operation
record kept current while it runs (the heartbeat other replicas watch), cancels
read from the store, takeovers noticed, a store outage ridden out for up to the
heartbeat timeout, and any failure turned into the operation's ending.

A subclass says what it runs (`_run`), how it ends in failure (`_fail`), where
it stands for messages (`_where`) and how its metadata carries the heartbeat's
time and worker (`_stamp`).
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Callable, Iterable, TypeVar

from google.protobuf import json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2

from ..errors import ExplaindError, InvalidArgument
from ..store.models import ModelStore
from ..store.operations import OperationRecord, OperationStore
from ..store.retry import StoreUnavailable
from .runners.request import BuildCancelled

log = logging.getLogger(__name__)
T = TypeVar("T")


class StoreLost(Exception):
    """The operation record could not be written for longer than the heartbeat timeout."""


@dataclasses.dataclass(frozen=True)
class JobServices:
    """What every job of a replica shares."""
    models: ModelStore
    operations: OperationStore
    worker: str                              # this replica, as operation records name it
    heartbeat_seconds: float = 2.0           # how often a job writes its progress (the heartbeat)
    heartbeat_timeout_seconds: float = 30.0  # the silence after which other replicas take a job for dead
    metrics: object | None = None


class OperationJob:
    """One job's side of its operation record. `meta`: the metadata message the record
    carries (unpacked from it here, packed back at every write)."""

    def __init__(self, services: JobServices, op: OperationRecord, meta):
        self.services = services
        self.operations = services.operations
        self.op = op
        self.meta = meta
        self.op.operation.metadata.Unpack(self.meta)
        self.cancel_event = threading.Event()
        # Set when another replica already ended this operation (it took our silence
        # for death): we then publish nothing and write nothing.
        self.taken_over = threading.Event()
        self._record_lock = threading.Lock()
        self._stop_beating = threading.Event()
        self._last_beat = time.monotonic()            # the record's last successful write
        self._store_error: StoreUnavailable | None = None   # why writes failed since then

    # --- what a subclass says ---
    def _run(self) -> None:
        raise NotImplementedError

    def _fail(self, code: int, message: str, field: str | None = None, description: str = "") -> None:
        raise NotImplementedError

    def _where(self) -> str:
        """Where the job stands, leading its error messages ("stage EMBEDDING")."""
        return ""

    def _stamp(self) -> None:
        """The heartbeat's time and worker into `meta` (called with the record lock held)."""
        self.meta.update_time.GetCurrentTime()
        self.meta.worker = self.services.worker

    # --- the job ---
    def run(self) -> None:
        """Never raises: the outcome is written into the operation record."""
        self._last_beat = time.monotonic()        # queued time does not count
        beat = threading.Thread(target=self._heartbeat, name=f"heartbeat-{self.op.op_id[:8]}", daemon=True)
        beat.start()
        try:
            self._run()
        except BuildCancelled:
            during = f" during {self._where()}" if self._where() else ""
            self._fail(code_pb2.CANCELLED, f"cancelled by CancelOperation{during}")
        except StoreLost as e:
            self._fail(code_pb2.UNAVAILABLE, f"{self._lead()}{e}")
        except ExplaindError as e:
            self._fail(e.code.value[0], f"{self._lead()}{e}", e.field, e.message)
        except Exception as e:  # noqa: BLE001 - any failure must end the operation, not kill the worker
            log.exception("job failed", extra={"operation": self.op.operation.name})
            self._fail(code_pb2.INTERNAL, f"{self._lead()}{type(e).__name__}: {e}")
        finally:
            self._stop_beating.set()
            beat.join()

    def _lead(self) -> str:
        where = self._where()
        return f"{where}: " if where else ""

    # --- progress and heartbeats ---
    def _check(self) -> None:
        if self.cancel_event.is_set():
            raise BuildCancelled()
        silent = time.monotonic() - self._last_beat
        if self._store_error is not None and silent > self.services.heartbeat_timeout_seconds:
            raise StoreLost(f"the operation record could not be written for {silent:.0f}s, longer than the "
                            f"heartbeat timeout: {self._store_error}")

    def _beat(self) -> None:
        """Writes progress and the heartbeat; an unreachable store is noted, not fatal (see _check)."""
        try:
            self._sync_record()
        except StoreUnavailable as e:
            self._store_error = e
            log.warning("operation record not written: %s", e, extra={"operation": self.op.operation.name})
        else:
            self._last_beat = time.monotonic()
            self._store_error = None

    def _sync_record(self) -> None:
        """Writes progress and the heartbeat; reads a cancel (or a takeover) from the store."""
        with self._record_lock:
            if self._stop_beating.is_set():
                return            # the outcome is being written; a late beat must not undo it
            stored = self.operations.get(self.op.op_id)
            if stored is None:
                return            # DeleteOperation forgets the record; it does not cancel
            if stored.operation.done:
                self.taken_over.set()
                self.cancel_event.set()
                return
            if self.operations.cancel_requested(self.op.op_id):
                self.cancel_event.set()   # a cancel asked on another replica arrives through the store
            self._stamp()
            self.op.operation.metadata.Pack(self.meta)
            self.op.worker = self.services.worker
            self.operations.put(self.op)

    def _heartbeat(self) -> None:
        # Its own thread: a long model load or index build must not look like a dead worker.
        while not self._stop_beating.wait(self.services.heartbeat_seconds):
            try:
                self._beat()
            except Exception:  # noqa: BLE001 - a missed beat is retried; the job goes on
                log.exception("heartbeat failed", extra={"operation": self.op.operation.name})

    # --- endings ---
    def _end_with_error(self, code: int, message: str, field: str | None = None, description: str = "") -> None:
        """Writes the operation's error as its outcome (the metadata as it stands)."""
        status = status_pb2.Status(code=code, message=message)
        if field:
            detail = error_details_pb2.BadRequest(field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=field, description=description or message)])
            status.details.add().Pack(detail)
        self.meta.update_time.GetCurrentTime()
        self.op.operation.metadata.Pack(self.meta)
        self.op.operation.error.CopyFrom(status)
        self.op.operation.done = True
        self._store_final()

    def _store_final(self) -> None:
        def write() -> None:
            with self._record_lock:
                stored = self.operations.get(self.op.op_id)
                # A DeleteOperation during the job forgets the record: do not resurrect it.
                # One already ended (by a replica that took our silence for death) stays as it is.
                if stored is not None and not stored.operation.done:
                    self.operations.put(self.op)
        self._best_effort("write the operation's outcome", lambda: self._patiently(write))

    def _patiently(self, step: Callable[[], T]) -> T:
        """`step()`, again while the store is unreachable, for up to the heartbeat timeout;
        then its StoreUnavailable."""
        deadline = time.monotonic() + self.services.heartbeat_timeout_seconds
        while True:
            try:
                return step()
            except StoreUnavailable:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(min(self.services.heartbeat_seconds, max(0.0, deadline - time.monotonic())))

    def _best_effort(self, what: str, step: Callable[[], object]) -> bool:
        """For the job's ending: a failure is logged (housekeeping finishes the job later)."""
        try:
            step()
            return True
        except Exception as e:  # noqa: BLE001 - the ending goes on; what is left behind is cleaned later
            log.error("could not %s: %s", what, e, extra={"operation": self.op.operation.name})
            return False


def end_stale_operations(operations: OperationStore, listing: Iterable[OperationRecord] | None,
                         timeout_seconds: float, running_here: Callable[[str], bool],
                         kind: Callable[[OperationRecord], bool], end: Callable[[OperationRecord], None]) -> int:
    """Ends (`end(op)`) the operations of `kind` whose worker stopped heart-beating for
    `timeout_seconds` (it died), each read again first (a listing may be stale),
    skipping those running here. `listing`: operations the caller already listed
    (None: the store is listed). Returns how many it ended."""
    deadline = time.time() - timeout_seconds
    ended = 0
    for op in operations.list() if listing is None else listing:
        if op.operation.done or op.heartbeat > deadline or not kind(op) or running_here(op.op_id):
            continue
        op = operations.get(op.op_id)
        if op is None or op.operation.done or op.heartbeat > deadline:
            continue
        end(op)
        ended += 1
    return ended


def callers_copy(op: OperationRecord) -> OperationRecord:
    """A job's operation as its caller may keep it: a copy, since the job's own
    record changes on the job's thread."""
    operation = type(op.operation)()
    operation.CopyFrom(op.operation)
    return dataclasses.replace(op, operation=operation)


def recordable(request, field: str) -> dict:
    """A request as the JSON its operation record keeps. A message can hold what JSON
    cannot (NaN or infinity in a Value, a Timestamp out of range): refused, not recorded."""
    try:
        return json_format.MessageToDict(request)
    except (json_format.SerializeToJsonError, ValueError) as e:
        raise InvalidArgument(f"cannot be recorded: {e}", field=field) from None
