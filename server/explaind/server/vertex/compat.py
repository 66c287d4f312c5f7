"""What Vertex AI compatibility adds to one daemon: Vertex's PredictionService
on the gRPC server, and Vertex's REST API on --http-port (0 = off)."""
from __future__ import annotations

import grpc

from ..admission import Admission
from ..config import Settings, SettingsError
from ..control.control_plane import ControlPlane
from ..serving.data_plane import DataPlane
from .endpoints import EndpointMap
from .prediction import SERVICES, VertexPrediction, add_to_server

__all__ = ["SERVICES", "VertexCompat"]


class VertexCompat:
    def __init__(self, settings: Settings, data_plane: DataPlane, control_plane: ControlPlane, admission: Admission,
                 security=None):
        """`admission`: the daemon's, shared with the gRPC port; `security`: the
        daemon's security.Security (the REST port's TLS)."""
        self.settings = settings
        # A mapping that does not parse stops the daemon here, before any port opens.
        try:
            endpoints = EndpointMap.from_setting(settings.vertex_endpoints)
        except Exception as e:  # noqa: BLE001 - a missing file, JSON or YAML syntax, a wrong shape
            raise SettingsError(f"--vertex-endpoints: {' '.join(str(e).split())[:500]}") from None
        self.prediction = VertexPrediction(data_plane, endpoints)
        self.rest = None
        if settings.http_port:
            from .rest import RestApi        # aiohttp: only when the REST port is on
            certificates = security.certificates if security is not None else None
            self.rest = RestApi(self.prediction, control_plane, admission, max_body_bytes=settings.max_message_bytes,
                                ssl_context=certificates.ssl_context() if certificates is not None else None)
        self.http_port = 0

    def add_to(self, server: grpc.aio.Server) -> None:
        add_to_server(self.prediction, server)

    async def start(self) -> None:
        if self.rest is not None:
            self.http_port = await self.rest.start(self.settings.host, self.settings.http_port,
                                                   self.settings.shutdown_grace_seconds)

    async def stop(self) -> None:
        if self.rest is not None:
            await self.rest.stop()
