"""Graceful shutdown on SIGTERM / SIGINT (Kubernetes sends SIGTERM, then
SIGKILL after terminationGracePeriodSeconds).

On the first signal: health goes NOT_SERVING (for "" and every listed
service) so load balancers stop sending; after an optional `drain_delay_s`
(time for them to notice) new calls are refused with UNAVAILABLE while calls
in flight finish, for up to `grace_s`; then the sockets on `port` are shut
down (sockets.py: calls still in transit fail with UNAVAILABLE, not the
CANCELLED that stop() would give them) and the server stops. A second signal
stops at once. `wait()` then returns and the serve coroutine can return, so
the process exits 0.

    await server.start()
    shutdown = GracefulShutdown(server, health=health, services=names, drain=drain)
    shutdown.install()
    await shutdown.wait()
"""
from __future__ import annotations

import asyncio
import logging
import signal
from typing import Awaitable, Callable, Iterable

from grpc import aio

from .sockets import shut_down_port

log = logging.getLogger(__name__)

NOT_SERVING = 2  # grpc.health.v1.HealthCheckResponse.ServingStatus.NOT_SERVING
# Between the last call's end and the sockets' shutdown: its response is already
# with the kernel, this only leaves slack for a loaded event loop.
SETTLE_S = 0.05


class GracefulShutdown:
    def __init__(self, server: aio.Server, health=None, services: Iterable[str] = (),
                 drain=None, grace_s: float = 20.0, drain_delay_s: float = 0.0,
                 on_stopped: Callable[[], Awaitable[None] | None] | None = None, port: int = 0):
        """`health`: a grpc_health.v1.health.aio.HealthServicer. `drain`: the
        daemon's Admission (or anything with start_draining() and async
        wait_idle(timeout)). `on_stopped`: run after the server stopped (close
        the batcher, the metrics server...). `port`: the serving port, whose
        sockets are shut down before the stop (0: none)."""
        self._server = server
        self._health = health
        self._services = [s for s in services if s]
        self._drain = drain
        self.grace_s = grace_s
        self.drain_delay_s = drain_delay_s
        self.exempt_grace_s = 1.0
        self._on_stopped = on_stopped
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._signals: tuple[int, ...] = ()
        self._task: asyncio.Task | None = None
        self._done = asyncio.Event()

    def install(self, signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT)) -> None:
        """Handle `signals` on the running loop (call from inside it)."""
        self._loop = asyncio.get_running_loop()
        self._signals = tuple(signals)
        for sig in self._signals:
            self._loop.add_signal_handler(sig, self._on_signal, sig)

    def uninstall(self) -> None:
        if self._loop is not None:
            for sig in self._signals:
                self._loop.remove_signal_handler(sig)
            self._signals = ()

    @property
    def started(self) -> bool:
        return self._task is not None

    def _on_signal(self, sig: int) -> None:
        name = signal.Signals(sig).name
        if self._task is None:
            log.info("received %s: shutting down gracefully", name, extra={"grace_s": self.grace_s})
            self._task = asyncio.get_running_loop().create_task(self._shutdown(name))
        else:
            log.warning("received %s again: stopping now", name)
            asyncio.get_running_loop().create_task(self._server.stop(0))

    def trigger(self, reason: str = "requested") -> asyncio.Task:
        """Start the shutdown without a signal (idempotent); returns its task."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._shutdown(reason))
        return self._task

    async def wait(self) -> None:
        """Return once a shutdown has completed (the server is stopped)."""
        await self._done.wait()

    async def _shutdown(self, reason: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.grace_s
        try:
            await self._set_not_serving()
            if self.drain_delay_s > 0:
                await asyncio.sleep(min(self.drain_delay_s, self.grace_s))
            stop_grace = max(0.0, deadline - loop.time())
            if self._drain is not None:
                self._drain.start_draining()
                idle = await self._drain.wait_idle(stop_grace)
                stop_grace = max(0.0, deadline - loop.time())
                if idle:
                    # Only exempt calls remain (health Watch streams, reflection), which
                    # never end by themselves: do not let them hold the exit for the
                    # whole grace period.
                    stop_grace = min(stop_grace, self.exempt_grace_s)
                else:
                    log.warning("grace period over with calls still in flight; they end with UNAVAILABLE",
                                extra={"inflight": getattr(self._drain, "inflight", None)})
            if self.port:
                await asyncio.sleep(SETTLE_S)
                shut_down_port(self.port)
            await self._server.stop(stop_grace)
            if self._on_stopped is not None:
                result = self._on_stopped()
                if asyncio.iscoroutine(result):
                    await result
            log.info("server stopped", extra={"reason": reason})
        except Exception:
            log.exception("error during shutdown; stopping the server now")
            await self._server.stop(0)
        finally:
            self.uninstall()
            self._done.set()

    async def _set_not_serving(self) -> None:
        if self._health is None:
            return
        for service in ["", *self._services]:
            await self._health.set(service, NOT_SERVING)
        # Also flips every other registered service, and ignores later set() calls,
        # so nothing (say, a model watcher) turns health back to SERVING.
        await self._health.enter_graceful_shutdown()
