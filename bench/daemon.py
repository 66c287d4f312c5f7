"""Starts a real `explaind serve` process and uploads an embeddings-only model (bench helper)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

from explaind.client import Client

READY = re.compile(r"explaind listening on port (\d+) \(metrics on (\d+)")


class Daemon:
    def __init__(self, *flags: str, store: str | None = None, tls: bool = False, env: dict | None = None):
        """`store`: an existing store folder (its models are served at once), else a new one.
        `flags` come last, so they override these defaults. No spare build process by
        default: the spare the first upload starts imports TensorFlow for seconds, which
        on a small machine would slow whatever a benchmark times first. `tls`: the ports
        serve TLS with a certificate made here (`credentials()` trusts it). `env`: added
        to the daemon's environment."""
        self.dir = tempfile.mkdtemp(prefix="explaind-bench-")
        self.store = store or os.path.join(self.dir, "store")
        self.ca_file = self._make_certificate() if tls else None
        tls_flags = ["--tls-cert-file", os.path.join(self.dir, "server.pem"),
                     "--tls-key-file", os.path.join(self.dir, "server.key")] if tls else []
        cmd = [sys.executable, "-m", "explaind.server.main", "serve", "--host", "127.0.0.1", "--port", "0",
               "--metrics-port", "0", "--http-port", "0", "--store", self.store, "--log-level", "WARNING",
               "--build-spare-process", "false", *tls_flags, *flags]
        workers = _flag_value(cmd, "--workers")
        self.workers = int(workers) if workers else 1
        self.log = open(os.path.join(self.dir, "server.log"), "wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {})))
        self.metrics_ports: list[int] = []        # one per worker: each announces its own line
        end = time.monotonic() + 120
        while time.monotonic() < end and len(self.metrics_ports) < self.workers:
            match = READY.search(self.proc.stdout.readline())
            if match:
                self.port = int(match.group(1))
                self.metrics_ports.append(int(match.group(2)))
        if len(self.metrics_ports) < self.workers:
            raise RuntimeError("daemon did not start; see " + self.log.name)
        self.metrics_port = self.metrics_ports[0]

    def _make_certificate(self) -> str:
        """A CA and a server certificate for 127.0.0.1 in this daemon's folder; the CA's path."""
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from tests.certs import CA

        ca = CA("explaind bench CA")
        cert, key = ca.issue("127.0.0.1", ips=["127.0.0.1"])
        for name, pem in (("ca.pem", ca.pem), ("server.pem", cert), ("server.key", key)):
            with open(os.path.join(self.dir, name), "wb") as f:
                f.write(pem)
        return os.path.join(self.dir, "ca.pem")

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def credentials(self):
        """Channel credentials trusting this daemon's certificate; None without TLS."""
        if self.ca_file is None:
            return None
        import grpc

        with open(self.ca_file, "rb") as f:
            return grpc.ssl_channel_credentials(root_certificates=f.read())

    def aio_channel(self, options=()):
        import grpc

        credentials = self.credentials()
        if credentials is None:
            return grpc.aio.insecure_channel(self.target, options=list(options))
        return grpc.aio.secure_channel(self.target, credentials, options=list(options))

    def channel(self, options=()):
        import grpc

        credentials = self.credentials()
        if credentials is None:
            return grpc.insecure_channel(self.target, options=list(options))
        return grpc.secure_channel(self.target, credentials, options=list(options))

    def cpu_seconds(self) -> float:
        """User + system CPU of the daemon's process tree (its workers and any build
        process included) so far, from /proc: robust to what else the machine runs."""
        return sum(process_cpu_seconds(pid) for pid in process_tree(self.proc.pid))

    def histogram(self, name: str, model_id: str) -> dict:
        """A histogram of every worker summed: {"buckets": {upper bound: cumulative count}, "sum", "count"}."""
        from urllib.request import urlopen

        from prometheus_client.parser import text_string_to_metric_families

        out = {"buckets": {}, "sum": 0.0, "count": 0.0}
        for port in self.metrics_ports:
            with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
                text = response.read().decode()
            for family in text_string_to_metric_families(text):
                if family.name != name:
                    continue
                for sample in family.samples:
                    if sample.labels.get("model") != model_id:
                        continue
                    if sample.name.endswith("_bucket"):
                        bound = float(sample.labels["le"])
                        out["buckets"][bound] = out["buckets"].get(bound, 0.0) + sample.value
                    elif sample.name.endswith("_sum"):
                        out["sum"] += sample.value
                    elif sample.name.endswith("_count"):
                        out["count"] += sample.value
        return out

    def upload_embeddings(self, data: np.ndarray, model_id: str, distance: str = "DOT_PRODUCT_DISTANCE",
                          algorithm: dict | None = None) -> None:
        self.dimensions = int(data.shape[1])
        path = os.path.join(self.dir, f"{model_id}.npy")
        np.save(path, data)
        config = {"dimensions": int(data.shape[1]), "distanceMeasureType": distance,
                  "algorithmConfig": algorithm or {"bruteForceConfig": {}}}
        model = {"displayName": model_id, "explanationSpec": {"parameters": {"examples": {
            "gcsSource": {"uris": [path]}, "neighborCount": 10,
            "nearestNeighborSearchConfig": {"contentsDeltaUri": "", "config": config}}}}}
        self.upload(model, model_id)

    def wait_all_workers_loaded(self, workers: int, model_id: str = "load", timeout: float = 600) -> None:
        """With --workers N, each worker loads the model on its own: wait until N
        distinct connections have answered an Explain for it."""
        if workers <= 1:
            return
        import grpc

        from explaind.v1 import prediction_service_pb2_grpc

        request = explain_requests(np.zeros((1, self.dimensions), np.float32), model_id)[0]
        end = time.monotonic() + timeout
        answered = 0
        while answered < 4 * workers and time.monotonic() < end:
            # A fresh connection each time: SO_REUSEPORT spreads them over the workers.
            with self.channel(options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
                try:
                    prediction_service_pb2_grpc.PredictionServiceStub(channel).Explain(request, timeout=600)
                    answered += 1
                except grpc.RpcError:
                    time.sleep(0.5)

    def upload(self, model: dict, model_id: str) -> None:
        with Client(self.target, tls_ca_file=self.ca_file) as client:
            client.wait(client.upload_model(model, model_id=model_id), timeout=1800)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        self.log.close()


def _flag_value(cmd: list[str], flag: str) -> str | None:
    """The last value given to `flag` in `cmd` (later flags override earlier ones)."""
    value = None
    for i, part in enumerate(cmd[:-1]):
        if part == flag:
            value = cmd[i + 1]
    return value


def process_tree(pid: int) -> list[int]:
    """`pid` and every live descendant, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue        # ended meanwhile
            children.setdefault(parent, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (all its threads), 0 if it has ended."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command: state is field 3 of stat(5), utime 14 and stime 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def batch_sizes(before: dict, after: dict) -> dict:
    """Batches formed between two `histogram("explaind_batch_size", ...)` readings:
    their count, mean size, and the share of batches at each bucket's bound or below."""
    count = after["count"] - before["count"]
    if count <= 0:
        return {"batches": 0, "mean": 0.0, "le": {}}
    le = {bound: (after["buckets"][bound] - before["buckets"].get(bound, 0.0)) / count
          for bound in sorted(after["buckets"]) if bound != float("inf")}
    return {"batches": int(count), "mean": (after["sum"] - before["sum"]) / count, "le": le}


# The index kinds the benchmarks compare: treeAh maps to IVF with
# nlist = N / leafNodeEmbeddingCount and nprobe = nlist * percent / 100.
ALGORITHMS = {
    "flat": {"bruteForceConfig": {}},
    "ivf": {"treeAhConfig": {"leafNodeEmbeddingCount": 1000, "leafNodesToSearchPercent": 3}},
}


# The measures the throughput benchmarks compare, and their raw FAISS metric.
MEASURES = {"DOT_PRODUCT_DISTANCE": "METRIC_INNER_PRODUCT", "SQUARED_L2_DISTANCE": "METRIC_L2"}


def raw_index(data: np.ndarray, algorithm: str, gpu: bool, distance: str = "DOT_PRODUCT_DISTANCE"):
    """The raw FAISS index the daemon builds for `algorithm` and `distance` (one of
    MEASURES), on the GPU when asked and visible: the baseline of the same run."""
    import math

    import faiss

    d = data.shape[1]
    metric = getattr(faiss, MEASURES[distance])
    if algorithm == "flat":
        index = faiss.IndexFlat(d, metric)
    else:
        tree = ALGORITHMS["ivf"]["treeAhConfig"]
        nlist = min(math.ceil(len(data) / tree["leafNodeEmbeddingCount"]), len(data) // 39)
        index = faiss.IndexIVFFlat(faiss.IndexFlat(d, metric), d, nlist, metric)
        sample = data[np.random.default_rng(1234).choice(len(data), min(len(data), nlist * 256), replace=False)]
        index.train(sample)
        index.nprobe = max(1, math.ceil(nlist * tree["leafNodesToSearchPercent"] / 100))
    index.add(data)
    if gpu and gpu_visible():
        resources = faiss.StandardGpuResources()
        index = faiss.index_cpu_to_gpu(resources, 0, index)
        index.referenced_resources = resources       # keep them alive with the index
    return index


def gpu_visible() -> bool:
    import faiss

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def explain_requests(queries: np.ndarray, model_id: str) -> list:
    """One EMBEDDINGS-format ExplainRequest per query row."""
    from google.protobuf import json_format, struct_pb2

    from explaind.v1 import explanation_pb2, prediction_service_pb2

    out = []
    for q in queries:
        r = prediction_service_pb2.ExplainRequest(name=f"models/{model_id}")
        r.instances.append(json_format.ParseDict(q.tolist(), struct_pb2.Value()))
        r.explanation_spec_override.examples_override.data_format = \
            explanation_pb2.ExamplesOverride.DataFormat.EMBEDDINGS
        out.append(r)
    return out


def percentiles(samples_s: list[float]) -> dict[str, float]:
    ms = np.asarray(samples_s) * 1000
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
            "p99.9": float(np.percentile(ms, 99.9))}
