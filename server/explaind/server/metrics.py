"""Every Prometheus metric explaind exports, in one place.

A `Metrics` object owns its own `CollectorRegistry` (never the global one), so
tests and several servers in one process never clash. Create one per server
and pass it to whatever records: interceptors, batcher, loader, build job.

The grpc_server_* metrics keep go-grpc-prometheus's names and labels so the
usual dashboards and alert rules work unchanged.
"""
from __future__ import annotations

import ctypes
import logging
import threading
from typing import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# prometheus.DefBuckets, as go-grpc-prometheus uses for handling time.
_HANDLING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# Queue time is meant to stay around max_queue_delay (milliseconds).
_QUEUE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_COMPUTE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Build stages run for seconds to hours.
_BUILD_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0)
# One store request: milliseconds (a local folder) to the request timeout (a hung store).
_STORE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

OPERATION_STATES = ("RUNNING", "SUCCEEDED", "FAILED", "CANCELLED")


class Metrics:
    """The server's metrics, registered on `self.registry`.

    Attributes are prometheus_client metrics; use them as usual, e.g.
    `metrics.batch_size.labels(model="m").observe(8)`.
    """

    def __init__(self, registry: CollectorRegistry | None = None, gpu_memory: bool = True):
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry

        # gRPC, go-grpc-prometheus names (prometheus_client appends _total itself).
        grpc_labels = ("grpc_type", "grpc_service", "grpc_method")
        self.grpc_started = Counter(
            "grpc_server_started_total", "Total number of RPCs started on the server.",
            grpc_labels, registry=r)
        self.grpc_handled = Counter(
            "grpc_server_handled_total",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            grpc_labels + ("grpc_code",), registry=r)
        self.grpc_handling_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level "
            "handled by the server.",
            grpc_labels, buckets=_HANDLING_BUCKETS, registry=r)

        # Serving.
        self.batch_size = Histogram(
            "explaind_batch_size", "Instances per batch run by the dynamic batcher.",
            ("model",), buckets=_BATCH_SIZE_BUCKETS, registry=r)
        self.queue_seconds = Histogram(
            "explaind_queue_seconds", "Time a call waited in the batcher queue before its batch started.",
            ("model",), buckets=_QUEUE_BUCKETS, registry=r)
        self.embedding_seconds = Histogram(
            "explaind_embedding_seconds",
            "Time of one model run computing a batch's latent embeddings (and the model's outputs beside).",
            ("model",), buckets=_COMPUTE_BUCKETS, registry=r)
        self.search_seconds = Histogram(
            "explaind_search_seconds", "Time of one nearest-neighbor index search (one batch).",
            ("model", "device"), buckets=_COMPUTE_BUCKETS, registry=r)
        self.instances = Counter(
            "explaind_instances_total", "Instances received, by model and method (Explain, Predict).",
            ("model", "method"), registry=r)
        self.neighbors_returned = Counter(
            "explaind_neighbors_returned_total", "Neighbors returned in responses.",
            ("model",), registry=r)
        self.inflight_calls = Gauge(
            "explaind_inflight_calls", "Calls being handled now (health and reflection excluded).",
            registry=r)
        self.rejected_calls = Counter(
            "explaind_rejected_calls_total",
            "Calls refused before any work: concurrency_limit, queue_full, draining, deadline, "
            "unauthenticated, permission_denied.",
            ("reason",), registry=r)

        # Models and indexes.
        self.models_loaded = Gauge(
            "explaind_models_loaded", "Models loaded and ready to serve on this replica.", registry=r)
        self.index_vectors = Gauge(
            "explaind_index_vectors", "Vectors in a loaded model's index.",
            ("model", "device"), registry=r)
        self.index_bytes = Gauge(
            "explaind_index_bytes", "Approximate host memory held by a loaded model's index.",
            ("model", "device"), registry=r)
        self.index_mapped_bytes = Gauge(
            "explaind_index_mapped_bytes",
            "Full vectors a loaded compressed index reads through a memory map (page cache, not held).",
            ("model", "device"), registry=r)
        self.index_recall = Gauge(
            "explaind_index_recall",
            "Recall@neighborCount of a loaded model's index as configured, measured by its build (or last "
            "update) on held-out examples against exact search; 1 for an exact index.",
            ("model", "device"), registry=r)
        self.index_recall_floor = Gauge(
            "explaind_index_recall_floor",
            "The recall floor a loaded model's index is held to (its preset's, or 0.9).",
            ("model", "device"), registry=r)
        self.filter_violations = Counter(
            "explaind_filter_violations_total",
            "Query rows whose filtered search returned an example the filter excludes (answered again "
            "exactly); nonzero means the FAISS build ignores search selectors.",
            ("model", "device"), registry=r)

        # Uploads (build jobs).
        self.operations = Gauge(
            "explaind_operations", "Operations known to this replica, by state.",
            ("state",), registry=r)
        for state in OPERATION_STATES:  # export zeros so absent != zero in queries
            self.operations.labels(state=state)
        self.build_stage_seconds = Histogram(
            "explaind_build_stage_seconds", "Duration of each upload build stage.",
            ("stage",), buckets=_BUILD_BUCKETS, registry=r)

        # Vertex AI compatibility: the REST port (--http-port).
        self.http_requests = Counter(
            "explaind_http_requests", "REST calls answered, by route and HTTP status.",
            ("route", "code"), registry=r)
        self.http_request_seconds = Histogram(
            "explaind_http_request_seconds", "REST call duration, by route.",
            ("route",), buckets=_HANDLING_BUCKETS, registry=r)
        # The store (every attempt of every request, by operation: read, write, create,
        # exists, delete, list, upload, download).
        self.store_request_seconds = Histogram(
            "explaind_store_request_seconds", "Duration of one store request attempt, failed ones included.",
            ("operation",), buckets=_STORE_BUCKETS, registry=r)
        self.store_errors = Counter(
            "explaind_store_errors_total",
            "Store request attempts that failed (not-found and already-exists answers are not failures).",
            ("operation",), registry=r)

        self.gpu_memory: GpuMemoryCollector | None = None
        if gpu_memory:
            self.gpu_memory = GpuMemoryCollector()
            r.register(self.gpu_memory)

    def observe_store(self, operation: str, seconds: float, error: BaseException | None) -> None:
        """The store's `observe` hook (store/retry.py): one call per request attempt."""
        self.store_request_seconds.labels(operation=operation).observe(seconds)
        if error is not None:
            self.store_errors.labels(operation=operation).inc()

    def forget_model(self, model: str) -> None:
        """Drop a model's per-model gauge series when it is unloaded."""
        for gauge in (self.index_vectors, self.index_bytes, self.index_mapped_bytes, self.index_recall,
                      self.index_recall_floor):
            for labels in _label_sets(gauge):
                if labels.get("model") == model:
                    try:
                        gauge.remove(labels["model"], labels["device"])
                    except KeyError:
                        pass


def split_method(full_method: str) -> tuple[str, str]:
    """"/pkg.Service/Method" -> ("pkg.Service", "Method")."""
    parts = full_method.lstrip("/").split("/", 1)
    if len(parts) != 2:
        return "unknown", full_method
    return parts[0], parts[1]


def _label_sets(metric) -> Iterable[dict[str, str]]:
    for family in metric.collect():
        seen = set()
        for sample in family.samples:
            key = tuple(sorted(sample.labels.items()))
            if key not in seen:
                seen.add(key)
                yield dict(sample.labels)


class _NvmlMemory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


class GpuMemoryCollector(Collector):
    """explaind_gpu_memory_used_bytes{gpu}, read through NVML at scrape time.

    NVML ships with the NVIDIA driver (libnvidia-ml.so.1), so no Python
    package is needed. Without a driver or GPU the metric is simply absent;
    a scrape never fails because of it.
    """

    def __init__(self, library: str = "libnvidia-ml.so.1"):
        self._library = library
        self._nvml = None
        self._unavailable = False
        self._lock = threading.Lock()

    def _load(self):
        # Tried once: a host without a driver stays without one.
        if self._nvml is None and not self._unavailable:
            try:
                nvml = ctypes.CDLL(self._library)
                if nvml.nvmlInit_v2() != 0:
                    raise OSError("nvmlInit_v2 failed")
                self._nvml = nvml
            except (OSError, AttributeError) as exc:
                log.debug("GPU memory metric disabled: %s", exc)
                self._unavailable = True
        return self._nvml

    def read(self) -> dict[str, int]:
        """Used bytes per GPU index ("0", "1", ...); empty without GPU."""
        with self._lock:
            nvml = self._load()
            if nvml is None:
                return {}
            used: dict[str, int] = {}
            try:
                count = ctypes.c_uint(0)
                if nvml.nvmlDeviceGetCount_v2(ctypes.byref(count)) != 0:
                    return {}
                for i in range(count.value):
                    handle = ctypes.c_void_p()
                    if nvml.nvmlDeviceGetHandleByIndex_v2(i, ctypes.byref(handle)) != 0:
                        continue
                    mem = _NvmlMemory()
                    if nvml.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(mem)) != 0:
                        continue
                    used[str(i)] = int(mem.used)
            except Exception:  # never fail a scrape for a GPU reading
                log.debug("reading GPU memory failed", exc_info=True)
            return used

    def describe(self):
        return []  # the series depend on the host; nothing to declare up front

    def collect(self):
        used = self.read()
        if not used:
            return
        family = GaugeMetricFamily(
            "explaind_gpu_memory_used_bytes", "GPU memory in use (all processes), from NVML.",
            labels=("gpu",))
        for gpu, value in sorted(used.items()):
            family.add_metric((gpu,), value)
        yield family


def start_metrics_server(port: int, registry: CollectorRegistry, addr: str = "0.0.0.0"):
    """Serve `registry` at http://addr:port/metrics in a daemon thread.

    Returns (server, actual_port); port 0 picks a free port. Stop it with
    `stop_metrics_server(server)`.
    """
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return server, server.server_port


def stop_metrics_server(server) -> None:
    server.shutdown()
    server.server_close()
