"""Which methods the server registers, for checking them against the role table.

grpc.aio servers do not list what they serve. `RecordingServer` stands in
for the server while servicers are added (`add_*Servicer_to_server(servicer,
daemon.server)`) and remembers each service; its methods come from the
methods registered up front, else from the protobuf descriptor pool, where
every generated module registers its services. Everything else is passed to
the real server.
"""
from __future__ import annotations

from google.protobuf import descriptor_pool
from grpc import aio


class RecordingServer(aio.Server):
    """A grpc.aio.Server (for isinstance checks such as reflection's) that delegates to one."""

    def __init__(self, server: aio.Server):
        self._server = server
        self.registered: dict[str, set[str]] = {}
        self.unnamed_handlers = 0        # generic handlers that do not say their service

    @property
    def undescribed(self) -> list[str]:
        """Services registered whose methods are known neither from registered
        handlers nor from the descriptor pool: their methods cannot be checked."""
        return sorted(service for service, methods in self.registered.items() if not methods)

    def add_registered_method_handlers(self, service: str, handlers) -> None:
        self.registered.setdefault(service, set()).update(handlers)
        self._server.add_registered_method_handlers(service, handlers)

    def add_generic_rpc_handlers(self, handlers) -> None:
        for handler in handlers:
            service = handler.service_name() if hasattr(handler, "service_name") else None
            if service:
                self.registered.setdefault(service, set()).update(methods_of(service) or ())
            else:
                self.unnamed_handlers += 1
        self._server.add_generic_rpc_handlers(handlers)

    def add_insecure_port(self, address: str) -> int:
        return self._server.add_insecure_port(address)

    def add_secure_port(self, address: str, server_credentials) -> int:
        return self._server.add_secure_port(address, server_credentials)

    async def start(self) -> None:
        await self._server.start()

    async def stop(self, grace):
        return await self._server.stop(grace)

    async def wait_for_termination(self, timeout=None) -> bool:
        return await self._server.wait_for_termination(timeout)


def methods_of(service: str) -> set[str] | None:
    """The service's methods from the descriptor pool; None when it is not there
    (a hand-registered service: its registered handlers say)."""
    try:
        return {m.name for m in descriptor_pool.Default().FindServiceByName(service).methods}
    except KeyError:
        return None
