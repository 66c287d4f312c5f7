"""What Vertex AI compatibility adds to one daemon: Vertex's PredictionService
and JobService (batch prediction jobs) on the gRPC server, and Vertex's REST
API on --http-port (0 = off)."""
from __future__ import annotations

import grpc

from ..config import Settings
from ..control.control_plane import ControlPlane
from ..serving.data_plane import DataPlane
from . import jobs
from .endpoints import EndpointMap
from .prediction import SERVICES as PREDICTION_SERVICES
from .prediction import VertexPrediction, add_to_server

__all__ = ["SERVICES", "VertexCompat"]
SERVICES = PREDICTION_SERVICES + jobs.SERVICES


class VertexCompat:
    def __init__(self, settings: Settings, data_plane: DataPlane, control_plane: ControlPlane, metrics, drain,
                 security=None, batch_jobs=None):
        """`security`: the daemon's security.Security (the REST port's TLS and auth); `batch_jobs`:
        control/batch_jobs.BatchJobs (None: no JobService)."""
        self.settings = settings
        # A mapping that does not parse stops the daemon here, before any port opens.
        self.prediction = VertexPrediction(data_plane, EndpointMap.from_setting(settings.vertex_endpoints))
        self.jobs = jobs.VertexJobs(batch_jobs) if batch_jobs is not None else None
        self.rest = None
        if settings.http_port:
            from .jobs_rest import JobRoutes
            from .rest import RestApi        # aiohttp: only when the REST port is on
            certificates = security.certificates if security is not None else None
            self.rest = RestApi(self.prediction, control_plane, metrics, max_body_bytes=settings.max_message_bytes,
                                max_concurrent_calls=settings.max_concurrent_calls, draining=lambda: drain.draining,
                                authorizer=security.authorizer if security is not None else None,
                                ssl_context=certificates.ssl_context() if certificates is not None else None,
                                jobs=JobRoutes(self.jobs) if self.jobs is not None else None)
        self.http_port = 0

    def add_to(self, server: grpc.aio.Server) -> None:
        add_to_server(self.prediction, server)
        if self.jobs is not None:
            jobs.add_to_server(self.jobs, server)

    async def start(self) -> None:
        if self.rest is not None:
            self.http_port = await self.rest.start(self.settings.host, self.settings.http_port,
                                                   self.settings.shutdown_grace_seconds)

    async def stop(self) -> None:
        if self.rest is not None:
            await self.rest.stop()
