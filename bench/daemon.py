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
    def __init__(self, *flags: str, store: str | None = None):
        """`store`: an existing store folder (its models are served at once), else a new one.
        `flags` come last, so they override these defaults. No spare build process by
        default: the spare the first upload starts imports TensorFlow for seconds, which
        on a small machine would slow whatever a benchmark times first."""
        self.dir = tempfile.mkdtemp(prefix="explaind-bench-")
        self.store = store or os.path.join(self.dir, "store")
        cmd = [sys.executable, "-m", "explaind.server.main", "serve", "--host", "127.0.0.1", "--port", "0",
               "--metrics-port", "0", "--http-port", "0", "--store", self.store, "--log-level", "WARNING",
               "--build-spare-process", "false", *flags]
        self.log = open(os.path.join(self.dir, "server.log"), "wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        end = time.monotonic() + 120
        while time.monotonic() < end:
            match = READY.search(self.proc.stdout.readline())
            if match:
                self.port, self.metrics_port = int(match.group(1)), int(match.group(2))
                return
        raise RuntimeError("daemon did not start; see " + self.log.name)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

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
            with grpc.insecure_channel(self.target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
                try:
                    prediction_service_pb2_grpc.PredictionServiceStub(channel).Explain(request, timeout=600)
                    answered += 1
                except grpc.RpcError:
                    time.sleep(0.5)

    def upload(self, model: dict, model_id: str) -> None:
        with Client(self.target) as client:
            client.wait(client.upload_model(model, model_id=model_id), timeout=1800)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        self.log.close()


# The index kinds the benchmarks compare: treeAh maps to IVF with
# nlist = N / leafNodeEmbeddingCount and nprobe = nlist * percent / 100.
ALGORITHMS = {
    "flat": {"bruteForceConfig": {}},
    "ivf": {"treeAhConfig": {"leafNodeEmbeddingCount": 1000, "leafNodesToSearchPercent": 3}},
}


def raw_index(data: np.ndarray, algorithm: str, gpu: bool):
    """The raw FAISS index the daemon builds for `algorithm` (inner product), on
    the GPU when asked and visible: the baseline of the same run."""
    import math

    import faiss

    d = data.shape[1]
    if algorithm == "flat":
        index = faiss.IndexFlatIP(d)
    else:
        tree = ALGORITHMS["ivf"]["treeAhConfig"]
        nlist = min(math.ceil(len(data) / tree["leafNodeEmbeddingCount"]), len(data) // 39)
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
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
