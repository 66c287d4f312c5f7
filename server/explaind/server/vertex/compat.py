"""What Vertex AI compatibility adds to one daemon: Vertex's PredictionService,
ModelService, EndpointService and JobService (batch prediction jobs) on the gRPC server, Vertex's operation names
on google.longrunning.Operations, and Vertex's REST API on --http-port (0 = off).
The store's endpoints are polled here as the models are by the daemon's source."""
from __future__ import annotations

import asyncio
import logging

import grpc

from ..admission import Admission
from ..config import Settings, SettingsError
from ..control.control_plane import ControlPlane
from ..control.endpoints import EndpointControl
from ..serving.data_plane import DataPlane
from ..store.endpoints import EndpointStore
from ..store.retry import StoreUnavailable
from ..store.vertex_operations import VertexOperationStore
from . import jobs, services
from .endpoints import EndpointMap
from .endpoints_service import VertexEndpoints
from .models import VertexModels
from .operations import VertexOperations
from .prediction import SERVICES as PREDICTION_SERVICES
from .prediction import VertexPrediction, add_to_server
from .routing import Router

__all__ = ["SERVICES", "VertexCompat"]
SERVICES = PREDICTION_SERVICES + tuple(services.SERVICES) + jobs.SERVICES
log = logging.getLogger(__name__)


class VertexCompat:
    def __init__(self, settings: Settings, data_plane: DataPlane, control_plane: ControlPlane, admission: Admission,
                 security=None, objects=None, batch_jobs=None):
        """`admission`: the daemon's, shared with the gRPC port; `security`: the
        daemon's security.Security (the REST port's TLS); `objects`: the store
        (store/objects.ObjectStore), where endpoints and Vertex's operation records live;
        `batch_jobs`: control/batch_jobs.BatchJobs (None: no JobService)."""
        self.settings = settings
        objects = objects if objects is not None else control_plane.models.objects
        # A mapping that does not parse stops the daemon here, before any port opens.
        try:
            endpoint_map = EndpointMap.from_setting(settings.vertex_endpoints)
        except Exception as e:  # noqa: BLE001 - a missing file, JSON or YAML syntax, a wrong shape
            raise SettingsError(f"--vertex-endpoints: {' '.join(str(e).split())[:500]}") from None
        self.router = Router(EndpointStore(objects), endpoint_map)
        self.prediction = VertexPrediction(data_plane, self.router)
        self.endpoint_control = EndpointControl(self.router.store, control_plane.models, control_plane.manager.load,
                                                on_change=self.router.put)
        self.operations = VertexOperations(control_plane, VertexOperationStore(objects))
        self.models = VertexModels(control_plane, self.endpoint_control, self.operations)
        self.endpoints = VertexEndpoints(self.endpoint_control, control_plane, self.router, self.operations)
        self.operations_delegate = services.OperationsDelegate(self.operations)
        self.jobs = jobs.VertexJobs(batch_jobs, self.operations) if batch_jobs is not None else None
        self._poll_task: asyncio.Task | None = None
        self.rest = None
        if settings.http_port:
            from .jobs_rest import JobRoutes
            from .resources_rest import ResourceRoutes
            from .rest import RestApi        # aiohttp: only when the REST port is on
            certificates = security.certificates if security is not None else None
            self.rest = RestApi(self.prediction, control_plane, admission, max_body_bytes=settings.max_message_bytes,
                                ssl_context=certificates.ssl_context() if certificates is not None else None,
                                resources=ResourceRoutes(self.models, self.endpoints, self.operations),
                                jobs=JobRoutes(self.jobs) if self.jobs is not None else None)
        self.http_port = 0

    def add_to(self, server: grpc.aio.Server) -> None:
        add_to_server(self.prediction, server)
        services.add_to_server(self.models, self.endpoints, server)
        if self.jobs is not None:
            jobs.add_to_server(self.jobs, server)

    async def start(self) -> None:
        await asyncio.to_thread(self._poll)
        self._poll_task = asyncio.create_task(self._poll_forever())
        if self.rest is not None:
            self.http_port = await self.rest.start(self.settings.host, self.settings.http_port,
                                                   self.settings.shutdown_grace_seconds)

    def _poll(self) -> None:
        try:
            self.router.poll()
        except StoreUnavailable as e:
            # The endpoints routed by keep serving; changes meanwhile are seen at the first poll after.
            log.warning("endpoint poll failed: %s", e)
        except Exception:  # noqa: BLE001 - a bad poll must not stop watching
            log.exception("endpoint poll failed")

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.store_poll_seconds)
            await asyncio.to_thread(self._poll)

    async def stop(self) -> None:
        if self._poll_task is not None:
            self._poll_task.cancel()
        await self.operations.close()
        if self.rest is not None:
            await self.rest.stop()
