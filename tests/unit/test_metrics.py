"""Metrics: names and labels, the /metrics endpoint, gRPC counters equal to calls made."""
from __future__ import annotations

import asyncio
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from explaind.server.admission import Admission
from explaind.server.interceptors import AdmissionInterceptor
from explaind.server.metrics import GpuMemoryCollector, Metrics, start_metrics_server, stop_metrics_server

pytestmark = pytest.mark.timeout(30)

SERVICE = "explaind.v1.PredictionService"

EXPECTED = {
    # family name (as the parser reports it) -> (type, label names)
    "grpc_server_started": ("counter", {"grpc_type", "grpc_service", "grpc_method"}),
    "grpc_server_handled": ("counter", {"grpc_type", "grpc_service", "grpc_method", "grpc_code"}),
    "grpc_server_handling_seconds": ("histogram", {"grpc_type", "grpc_service", "grpc_method"}),
    "explaind_batch_size": ("histogram", {"model"}),
    "explaind_queue_seconds": ("histogram", {"model"}),
    "explaind_embedding_seconds": ("histogram", {"model"}),
    "explaind_search_seconds": ("histogram", {"model", "device"}),
    "explaind_instances": ("counter", {"model", "method"}),
    "explaind_neighbors_returned": ("counter", {"model"}),
    "explaind_models_loaded": ("gauge", set()),
    "explaind_index_vectors": ("gauge", {"model", "device"}),
    "explaind_index_bytes": ("gauge", {"model", "device"}),
    "explaind_index_mapped_bytes": ("gauge", {"model", "device"}),
    "explaind_filter_violations": ("counter", {"model", "device"}),
    "explaind_operations": ("gauge", {"state"}),
    "explaind_build_stage_seconds": ("histogram", {"stage"}),
    "explaind_inflight_calls": ("gauge", set()),
    "explaind_rejected_calls": ("counter", {"reason"}),
    "explaind_store_request_seconds": ("histogram", {"operation"}),
    "explaind_store_errors": ("counter", {"operation"}),
}


def scrape(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample(families: dict, sample_name: str, **labels) -> float:
    family_name = sample_name.removesuffix("_total").removesuffix("_count").removesuffix("_sum")
    family = families.get(family_name)
    if family is None:
        return 0.0
    for s in family.samples:
        if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return 0.0


def touch_every_metric(m: Metrics) -> None:
    """Give every labelled metric one series so the scrape shows its labels."""
    m.batch_size.labels(model="m").observe(3)
    m.queue_seconds.labels(model="m").observe(0.001)
    m.embedding_seconds.labels(model="m").observe(0.01)
    m.search_seconds.labels(model="m", device="cpu").observe(0.01)
    m.instances.labels(model="m", method="Explain").inc(3)
    m.neighbors_returned.labels(model="m").inc(30)
    m.models_loaded.set(1)
    m.index_vectors.labels(model="m", device="cpu").set(1000)
    m.index_bytes.labels(model="m", device="cpu").set(4096)
    m.index_mapped_bytes.labels(model="m", device="cpu").set(8192)
    m.filter_violations.labels(model="m", device="gpu").inc()
    m.operations.labels(state="RUNNING").set(1)
    m.build_stage_seconds.labels(stage="embed").observe(2.0)
    m.inflight_calls.set(0)
    m.rejected_calls.labels(reason="queue_full").inc()
    m.observe_store("read", 0.01, None)
    m.observe_store("write", 0.5, TimeoutError())
    m.grpc_started.labels("unary", SERVICE, "Explain").inc()
    m.grpc_handled.labels("unary", SERVICE, "Explain", "OK").inc()
    m.grpc_handling_seconds.labels("unary", SERVICE, "Explain").observe(0.01)


def test_every_metric_is_exported_with_its_labels():
    metrics = Metrics(gpu_memory=False)
    touch_every_metric(metrics)
    server, port = start_metrics_server(0, metrics.registry, addr="127.0.0.1")
    try:
        assert port > 0
        families = scrape(port)
    finally:
        stop_metrics_server(server)
    for name, (kind, labels) in EXPECTED.items():
        assert name in families, name
        assert families[name].type == kind, name
        series_labels = {k for s in families[name].samples for k in s.labels if k not in ("le",)}
        assert series_labels == labels, name
    assert sample(families, "explaind_operations", state="SUCCEEDED") == 0.0  # pre-created
    assert sample(families, "explaind_instances_total", model="m", method="Explain") == 3


def test_two_metrics_objects_do_not_clash():
    a, b = Metrics(gpu_memory=False), Metrics(gpu_memory=False)
    a.models_loaded.set(2)
    assert b.registry.get_sample_value("explaind_models_loaded") == 0
    assert a.registry.get_sample_value("explaind_models_loaded") == 2


def test_forget_model_drops_its_gauges():
    m = Metrics(gpu_memory=False)
    for model in ("a", "b"):
        m.index_vectors.labels(model=model, device="cpu").set(10)
        m.index_bytes.labels(model=model, device="cpu").set(40)
        m.index_mapped_bytes.labels(model=model, device="cpu").set(80)
    m.forget_model("a")
    assert m.registry.get_sample_value("explaind_index_vectors", {"model": "a", "device": "cpu"}) is None
    assert m.registry.get_sample_value("explaind_index_mapped_bytes", {"model": "a", "device": "cpu"}) is None
    assert m.registry.get_sample_value("explaind_index_bytes", {"model": "b", "device": "cpu"}) == 40


def test_gpu_memory_absent_without_gpu_and_scrape_still_works():
    collector = GpuMemoryCollector(library="libnvidia-ml-does-not-exist.so.1")
    assert collector.read() == {}
    assert list(collector.collect()) == []
    m = Metrics()  # the default collector: on a GPU host it reports, elsewhere it is absent
    server, port = start_metrics_server(0, m.registry, addr="127.0.0.1")
    try:
        families = scrape(port)
    finally:
        stop_metrics_server(server)
    gpu = families.get("explaind_gpu_memory_used_bytes")
    if gpu is not None:  # a host with a GPU
        assert all(s.value >= 0 and set(s.labels) == {"gpu"} for s in gpu.samples)


# -- gRPC counters against a real server ---------------------------------------

async def ok(request, context):
    return b"ok:" + request


async def invalid(request, context):
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "instances[0]: bad")


async def crash(request, context):
    raise ValueError("unexpected")


async def not_found_by_code(request, context):
    context.set_code(grpc.StatusCode.NOT_FOUND)
    context.set_details("models/x not found")
    return b""


async def hold(request, context):
    await asyncio.sleep(0.3)
    return b"held"


HANDLERS = {"Explain": ok, "Predict": invalid, "Crash": crash, "Missing": not_found_by_code, "Hold": hold}


async def start_server(interceptors):
    server = grpc.aio.server(interceptors=interceptors)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        SERVICE, {name: grpc.unary_unary_rpc_method_handler(fn) for name, fn in HANDLERS.items()}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


def test_grpc_counters_equal_calls_made():
    metrics = Metrics(gpu_memory=False)
    http_server, http_port = start_metrics_server(0, metrics.registry, addr="127.0.0.1")

    async def main():
        server, port = await start_server([AdmissionInterceptor(Admission(metrics, max_concurrent_calls=1))])
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                def method(name):
                    return channel.unary_unary(f"/{SERVICE}/{name}")

                for i in range(7):
                    assert await method("Explain")(b"%d" % i, timeout=5) == b"ok:%d" % i
                codes = []
                for name, n in (("Predict", 3), ("Crash", 2), ("Missing", 1)):
                    for _ in range(n):
                        with pytest.raises(grpc.aio.AioRpcError) as err:
                            await method(name)(b"x", timeout=5)
                        codes.append(err.value.code())
                assert codes == [grpc.StatusCode.INVALID_ARGUMENT] * 3 + [grpc.StatusCode.UNKNOWN] * 2 + [
                    grpc.StatusCode.NOT_FOUND]
                # a call held while another arrives: the limit (1) rejects the second one
                held = asyncio.ensure_future(method("Hold")(b"", timeout=5))
                for _ in range(200):
                    if metrics.registry.get_sample_value(
                            "grpc_server_started_total",
                            {"grpc_type": "unary", "grpc_service": SERVICE, "grpc_method": "Hold"}):
                        break
                    await asyncio.sleep(0.005)
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await method("Explain")(b"late", timeout=5)
                assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert await held == b"held"
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await channel.unary_unary(f"/{SERVICE}/NoSuchMethod")(b"", timeout=5)
                assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        finally:
            await server.stop(0)

    try:
        asyncio.run(asyncio.wait_for(main(), 20))
        families = scrape(http_port)
    finally:
        stop_metrics_server(http_server)

    def labels(method, **extra):
        return dict(grpc_type="unary", grpc_service=SERVICE, grpc_method=method, **extra)

    assert sample(families, "grpc_server_started_total", **labels("Explain")) == 8
    assert sample(families, "grpc_server_handled_total", **labels("Explain", grpc_code="OK")) == 7
    assert sample(families, "grpc_server_handled_total", **labels("Explain", grpc_code="RESOURCE_EXHAUSTED")) == 1
    assert sample(families, "grpc_server_handled_total", **labels("Predict", grpc_code="INVALID_ARGUMENT")) == 3
    assert sample(families, "grpc_server_handled_total", **labels("Crash", grpc_code="UNKNOWN")) == 2
    assert sample(families, "grpc_server_handled_total", **labels("Missing", grpc_code="NOT_FOUND")) == 1
    assert sample(families, "grpc_server_handled_total", **labels("Hold", grpc_code="OK")) == 1
    assert sample(families, "grpc_server_handling_seconds_count", **labels("Explain")) == 8
    assert sample(families, "grpc_server_handling_seconds_sum", **labels("Hold")) >= 0.25
    assert sample(families, "explaind_rejected_calls_total", reason="concurrency_limit") == 1
    # unknown methods are not counted (as in go-grpc-prometheus)
    assert sample(families, "grpc_server_started_total", **labels("NoSuchMethod")) == 0
    total_started = sum(s.value for s in families["grpc_server_started"].samples if s.name.endswith("_total"))
    total_handled = sum(s.value for s in families["grpc_server_handled"].samples if s.name.endswith("_total"))
    assert total_started == total_handled == 7 + 1 + 3 + 2 + 1 + 1


FAKE_NVML = r"""
typedef struct { unsigned long long total, free, used; } mem_t;
int nvmlInit_v2(void) { return 0; }
int nvmlDeviceGetCount_v2(unsigned int *n) { *n = 2; return 0; }
int nvmlDeviceGetHandleByIndex_v2(unsigned int i, void **h) { *h = (void *)(unsigned long)(i + 1); return 0; }
int nvmlDeviceGetMemoryInfo(void *h, mem_t *m) {
    m->total = 80ULL << 30; m->used = (unsigned long)h * 1000ULL; m->free = m->total - m->used; return 0; }
"""


def test_gpu_memory_read_through_nvml(tmp_path):
    """The NVML path, against a stand-in library with two GPUs (no GPU needed)."""
    import shutil
    import subprocess

    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the NVML stand-in")
    source = tmp_path / "fake_nvml.c"
    source.write_text(FAKE_NVML)
    library = tmp_path / "libfakenvml.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(library), str(source)], check=True, timeout=60)
    collector = GpuMemoryCollector(library=str(library))
    assert collector.read() == {"0": 1000, "1": 2000}
    m = Metrics(gpu_memory=False)
    m.registry.register(collector)
    assert m.registry.get_sample_value("explaind_gpu_memory_used_bytes", {"gpu": "1"}) == 2000


def test_store_attempts_are_timed_and_failed_ones_counted():
    m = Metrics(gpu_memory=False)
    m.observe_store("read", 0.004, None)
    m.observe_store("read", 2.0, TimeoutError("read timed out"))
    m.observe_store("upload", 0.2, None)
    get = m.registry.get_sample_value
    assert get("explaind_store_request_seconds_count", {"operation": "read"}) == 2
    assert get("explaind_store_request_seconds_bucket", {"operation": "read", "le": "0.005"}) == 1
    assert get("explaind_store_errors_total", {"operation": "read"}) == 1
    assert get("explaind_store_errors_total", {"operation": "upload"}) is None
