"""Assembles the daemon: store, model manager and its source, data and control
planes, servicers, interceptors, health, reflection, metrics endpoint and
graceful shutdown."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import tempfile

import grpc
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.rpc import code_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from explaind.v1 import batch_service_pb2, batch_service_pb2_grpc, model_service_pb2, model_service_pb2_grpc, \
    prediction_service_pb2, prediction_service_pb2_grpc

from .admission import Admission
from .announce import announce
from .api.batch import BatchServicer
from .api.model_service import ModelServicer
from .api.operations import OperationsServicer
from .api.prediction import PredictionServicer
from .batch.manager import BatchManager
from .builds.uploads import UploadManager
from .config import Settings, use_gpu
from .control.batch_jobs import BatchJobs
from .control.control_plane import ControlPlane
from .interceptors import AdmissionInterceptor
from .metrics import Metrics, stop_metrics_server
from .security import RecordingServer, Security
from .serving.cpu import apply as apply_threads
from .serving.cpu import plan_threads, planned_settings
from .serving.data_plane import DataPlane
from .serving.engine import Engine
from .serving.loader import BuildLoader
from .serving.manager import ModelManager
from .serving.requests import Limits
from .shutdown import GracefulShutdown
from .store.models import ModelStore
from .store.objects import ObjectStore
from .store.operations import OperationStore
from .store.retry import StoreRetry
from .store.source import PublishedModelsSource
from .vertex import compat as vertex

log = logging.getLogger(__name__)

SERVICES = (
    model_service_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name,
    prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"].full_name,
    operations_pb2.DESCRIPTOR.services_by_name["Operations"].full_name,
    batch_service_pb2.DESCRIPTOR.services_by_name["BatchService"].full_name,
)
# Health answers for these too (Vertex's PredictionService has no descriptors here, so no reflection).
HEALTH_SERVICES = ("",) + SERVICES + vertex.SERVICES


class Daemon:
    """One replica. `await start()`, then `await wait()`; `port`/`metrics_port` are the bound ports."""

    def __init__(self, settings: Settings):
        # This process's threads for its cores (a worker's share arrives as explicit numbers).
        self.threads = plan_threads(dataclasses.replace(settings, workers=1))
        settings = self.settings = planned_settings(settings, self.threads)
        self.metrics = Metrics()
        self.security = Security(settings)     # TLS, auth, --allowed-uri-prefix: checked first
        objects = ObjectStore(settings.store, StoreRetry(attempts=settings.store_attempts),
                              timeout_s=settings.store_timeout_seconds, observe=self.metrics.observe_store)
        self.models = ModelStore(objects)
        self.operations = OperationStore(objects)
        cache = settings.cache_dir or os.path.join(tempfile.gettempdir(), "explaind-cache")
        self.manager = ModelManager(BuildLoader(self.models, cache, use_gpu(settings), settings.rerank_reads), self.metrics)
        self.source = PublishedModelsSource(self.models, self.manager.set_aspired, settings.store_poll_seconds)
        self.uploads = UploadManager(self.models, self.operations, settings, self.metrics)
        self.uploads.on_update_published = self.manager.load     # an update serves here before its operation ends
        # Batch jobs run on the uploads' runners, as the uploads' jobs do (a process each, or Ray).
        self.batches = BatchManager(self.uploads.services, self.uploads.runners, settings, self.metrics)
        self.batch_jobs = BatchJobs(self.batches, self.operations)
        apply_threads(self.threads)
        self.engine = Engine(settings, self.metrics)
        self.data_plane = DataPlane(self.manager, self.engine, Limits.of(settings), self.metrics)
        self.control_plane = ControlPlane(self.uploads, self.models, self.operations, self.manager, self.batches)
        # Request ids, access log, auth, drain and the concurrency limit: one for every surface.
        self.admission = Admission(self.metrics, max_concurrent_calls=settings.max_concurrent_calls,
                                   authorizer=self.security.authorizer,
                                   access_log_sample=settings.access_log_sample)
        self.vertex = vertex.VertexCompat(settings, self.data_plane, self.control_plane, self.admission,
                                          self.security, objects, self.batch_jobs)
        self.health = health_aio.HealthServicer()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self.server: grpc.aio.Server | None = None
        self.shutdown: GracefulShutdown | None = None
        self.port = 0
        self.metrics_port = 0
        self._metrics_server = None

    def _server_options(self) -> list[tuple[str, int]]:
        s = self.settings
        options = [("grpc.max_receive_message_length", s.max_message_bytes),
                   ("grpc.max_send_message_length", s.max_message_bytes),
                   ("grpc.so_reuseport", 1)]
        if s.max_connection_age_seconds > 0:
            # Long-lived HTTP/2 connections pin a client to one replica; ending them
            # now and then lets client-side round-robin spread load over new pods.
            options += [("grpc.max_connection_age_ms", int(s.max_connection_age_seconds * 1000)),
                        ("grpc.max_connection_age_grace_ms", int(s.shutdown_grace_seconds * 1000))]
        return options

    async def start(self) -> None:
        s = self.settings
        # The first sync happens before the port opens, so a restarted replica serves at once.
        await asyncio.to_thread(self.source.poll)
        self.server = RecordingServer(grpc.aio.server(
            interceptors=[AdmissionInterceptor(self.admission, decode=True)],   # parsing last, inside it
            options=self._server_options(), maximum_concurrent_rpcs=None))
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(self.control_plane), self.server)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(self.data_plane), self.server)
        operations_pb2_grpc.add_OperationsServicer_to_server(
            OperationsServicer(self.control_plane, self.vertex.operations_delegate), self.server)
        batch_service_pb2_grpc.add_BatchServiceServicer_to_server(BatchServicer(self.batch_jobs), self.server)
        self.vertex.add_to(self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        if not s.disable_reflection:
            reflection.enable_server_reflection(
                SERVICES + (health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
                self.server)
        self.security.check_methods(self.server)
        self.port = self.security.add_port(self.server, f"{s.host}:{s.port}")
        if self.port == 0:
            raise RuntimeError(f"cannot listen on {s.host}:{s.port}")
        self._metrics_server, self.metrics_port = self.security.start_metrics_server(s.metrics_port,
                                                                                     self.metrics.registry)
        await self.server.start()
        await self.vertex.start()
        await self.security.start_health_port(self.health, self._server_options())
        for service in HEALTH_SERVICES:
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        self._tasks.append(asyncio.create_task(self.source.run(self._stop, on_tick=self._housekeeping)))
        self.shutdown = GracefulShutdown(self.server, self.health, HEALTH_SERVICES, self.admission,
                                         grace_s=s.shutdown_grace_seconds, on_stopped=self._on_stopped,
                                         port=self.port)
        log.info("explaind serving", extra={"port": self.port, "metrics_port": self.metrics_port,
                                            "store": s.store})
        self.security.warn_if_exposed(self.port)

    def _housekeeping(self) -> None:
        """Each poll: end builds whose worker died, and export operations by state."""
        operations = self.operations.list()
        if not self.settings.disable_model_uploads:     # a read-only replica writes nothing to the store
            self.uploads.fail_stale_builds(operations)   # may end some: counted below as they are now
            self.batches.fail_stale_jobs(operations)
        counts = {"RUNNING": 0, "SUCCEEDED": 0, "FAILED": 0, "CANCELLED": 0}
        for op in operations:
            if not op.operation.done:
                counts["RUNNING"] += 1
            elif op.operation.HasField("error"):
                counts["CANCELLED" if op.operation.error.code == code_pb2.CANCELLED else "FAILED"] += 1
            else:
                counts["SUCCEEDED"] += 1
        for state, n in counts.items():
            self.metrics.operations.labels(state=state).set(n)

    async def _on_stopped(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await self.vertex.stop()
        await self.engine.close()
        await self.security.stop()
        await asyncio.to_thread(self.batches.shutdown)
        await asyncio.to_thread(self.uploads.shutdown)
        if self._metrics_server is not None:
            stop_metrics_server(self._metrics_server)
            self._metrics_server = None

    async def stop(self) -> None:
        """Drains and stops (what SIGTERM does)."""
        await self.shutdown.trigger("stop()")
        await self.shutdown.wait()

    async def wait(self) -> None:
        await self.shutdown.wait()


async def serve(settings: Settings, ready=None) -> None:
    daemon = Daemon(settings)
    await daemon.start()
    daemon.shutdown.install()
    http = f", http on {daemon.vertex.http_port}" if daemon.vertex.http_port else ""
    health = f", health on {daemon.security.health_port}" if daemon.security.health_port else ""
    announce(f"explaind listening on port {daemon.port} (metrics on {daemon.metrics_port}{http}, "
             f"store {settings.store}{health})")
    if ready is not None:
        ready(daemon)
    await daemon.wait()
