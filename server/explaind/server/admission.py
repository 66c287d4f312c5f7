"""Admission: what every call goes through around its handler, whatever the
surface that received it.

One `Admission` per daemon, shared by the gRPC interceptor (interceptors.py)
and the REST middleware (vertex/rest.py), so there is one count of calls in
flight: --max-concurrent-calls bounds gRPC and REST together, the drain waits
for both, and both write the same access log. Per call, a surface:

1. takes the request id (`request_id_of`: the caller's x-request-id, bounded,
   or a new one) and sets it for the logs (request_id_var);
2. asks `admit(method, credentials, exempt)`: auth (the Authorizer, for the
   gRPC method the call is or stands for), then the drain, then the limit.
   A refusal is counted in explaind_rejected_calls_total and answered by the
   surface in its own terms; unauthenticated calls never count as in flight.
   An admitted call holds a slot of the limit until `release()` (its handler
   returned) and is in flight until `done()` (its answer went out);
3. writes one access-log line (`log_call`) and its own metrics.

The access log may be sampled (`access_log_sample`, --access-log-sample): every
call the server failed is written, and one in round(1 / sample) of the others,
each such line carrying `sample` so a reader can scale counts (the metrics
count every call). Formatting a JSON line costs about 17 us of the event
loop's time per call; at thousands of calls a second that is a share of a core.

Health and reflection (`exempt`) are neither refused nor counted by the drain
and the limit: a NOT_SERVING health answer is how a load balancer learns to
stop, and probes must keep answering under load.

Counters are plain integers: every surface runs on the daemon's event loop.
"""
from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
from typing import Callable, Iterable

import grpc

access_log = logging.getLogger("explaind.access")

REQUEST_ID_KEY = "x-request-id"
MAX_REQUEST_ID_CHARS = 128        # the caller chose it; keep log lines bounded
EXEMPT_SERVICES = frozenset({
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
})

# (authorization values, client-certificate names, the certificate's subject to show)
Credentials = tuple[Iterable, set, str]


@dataclasses.dataclass(frozen=True)
class Refusal:
    """A call refused before any work: its status and explaind_rejected_calls_total's reason."""
    code: grpc.StatusCode
    message: str
    reason: str


DRAINING = Refusal(grpc.StatusCode.UNAVAILABLE, "server is shutting down; retry on another replica", "draining")


def request_id_of(value) -> str:
    """The caller's request id (str or bytes), bounded, or a new one."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value[:MAX_REQUEST_ID_CHARS] if value else new_request_id()


class _RequestIds:
    """32 hex digits, as uuid4().hex: 64 random bits drawn once per process, then a
    counter. Unique across processes and replicas as a uuid4 would be, for a tenth
    of its cost (uuid4 reads the kernel's random source on every call)."""

    def __init__(self):
        self.reset()
        os.register_at_fork(after_in_child=self.reset)     # a forked child draws its own prefix

    def reset(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.counter = itertools.count()

    def __call__(self) -> str:
        return f"{self.prefix}{next(self.counter) & 0xFFFF_FFFF_FFFF_FFFF:016x}"


new_request_id = _RequestIds()


class Admission:
    def __init__(self, metrics=None, *, max_concurrent_calls: int = 0, authorizer=None,
                 logger: logging.Logger = access_log, access_log_sample: float = 1.0):
        """`metrics`: a Metrics (None: nothing counted); `max_concurrent_calls`: 0 for no
        limit; `authorizer`: security.auth.Authorizer (None: every caller may call);
        `access_log_sample`: the share of calls not failed by the server that are logged
        (1: all, 0: none)."""
        if max_concurrent_calls < 0:
            raise ValueError(f"max_concurrent_calls must be >= 0, got {max_concurrent_calls}")
        if not 0.0 <= access_log_sample <= 1.0:
            raise ValueError(f"access_log_sample must be between 0 and 1, got {access_log_sample}")
        self.access_log_sample = access_log_sample
        # One line in `_log_every` (0: none) of the calls the server did not fail.
        self._log_every = round(1.0 / access_log_sample) if access_log_sample > 0 else 0
        self._unlogged = 0
        self.metrics = metrics
        self.authorizer = authorizer
        self.max_concurrent_calls = max_concurrent_calls
        self._log = logger
        self._at_limit = Refusal(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"server is at its limit of {max_concurrent_calls} concurrent calls; retry with backoff, or raise "
            "the limit (max_concurrent_calls) or add replicas", "concurrency_limit")
        self._active = 0          # holding a slot of the limit: until the handler returns
        self._inflight = 0        # what the drain waits for: until the answer has gone out
        self._draining = False
        self._idle: asyncio.Event | None = None     # created on the loop, lazily

    # -- the decision ---------------------------------------------------------
    def admit(self, method: str | None, credentials: Callable[[], Credentials], exempt: bool = False
              ) -> Refusal | None:
        """None: the call goes ahead (unless exempt, it now holds a slot and is in
        flight: call release() and done()). `method`: the gRPC method path the
        call is or stands for (None: no such method, nothing to authorize);
        `credentials()` is asked only when an authorizer needs them."""
        if method is not None and self.authorizer is not None:
            refusal = self.authorizer.check(method, *credentials())
            if refusal is not None:
                return self._refused(refusal)
        if exempt:
            return None
        if self._draining:
            return self._refused(DRAINING)
        if self.max_concurrent_calls and self._active >= self.max_concurrent_calls:
            return self._refused(self._at_limit)
        self._active += 1
        self._inflight += 1
        if self.metrics is not None:
            self.metrics.inflight_calls.inc()
        return None

    def _refused(self, refusal: Refusal) -> Refusal:
        if self.metrics is not None:
            self.metrics.rejected_calls.labels(reason=refusal.reason).inc()
        return refusal

    def release(self) -> None:
        """An admitted call's handler returned: its slot of the limit is free."""
        self._active -= 1

    def done(self, *_ignored) -> None:
        """An admitted call's answer has gone out (usable as a done callback)."""
        self._inflight -= 1
        if self.metrics is not None:
            self.metrics.inflight_calls.dec()
        if self._inflight == 0 and self._idle is not None:
            self._idle.set()

    @property
    def active(self) -> int:
        return self._active

    # -- the drain (GracefulShutdown's `drain`) --------------------------------
    @property
    def inflight(self) -> int:
        return self._inflight

    @property
    def draining(self) -> bool:
        return self._draining

    def start_draining(self) -> None:
        """From now on new calls are refused with UNAVAILABLE; those in flight finish."""
        self._draining = True

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no call is in flight; False if `timeout` seconds passed first."""
        if self._inflight == 0:
            return True
        if self._idle is None:
            self._idle = asyncio.Event()
        self._idle.clear()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return self._inflight == 0

    # -- the access log ---------------------------------------------------------
    def log_call(self, method: str, code, server_side: bool, seconds: float, request_id: str, peer: str) -> None:
        """One line per call on "explaind.access" (sampled: see the module docstring);
        a warning, always written, when the server is at fault."""
        if server_side:
            level = logging.WARNING
        else:
            level = logging.INFO
            if self._log_every != 1:
                if not self._log_every:
                    return
                self._unlogged += 1
                if self._unlogged < self._log_every:
                    return
                self._unlogged = 0
        if not self._log.isEnabledFor(level):
            return
        extra = {"method": method, "code": code, "duration_ms": round(seconds * 1000, 3),
                 "request_id": request_id, "peer": peer}
        if level == logging.INFO and self._log_every != 1:
            extra["sample"] = 1.0 / self._log_every
        self._log.log(level, "%s %s", method, code, extra=extra)
