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
    def __init__(self, *flags: str):
        self.dir = tempfile.mkdtemp(prefix="explaind-bench-")
        cmd = [sys.executable, "-m", "explaind.server.main", "serve", "--host", "127.0.0.1", "--port", "0",
               "--metrics-port", "0", "--http-port", "0", "--store", os.path.join(self.dir, "store"),
               "--log-level", "WARNING", *flags]
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
        path = os.path.join(self.dir, f"{model_id}.npy")
        np.save(path, data)
        config = {"dimensions": int(data.shape[1]), "distanceMeasureType": distance,
                  "algorithmConfig": algorithm or {"bruteForceConfig": {}}}
        model = {"displayName": model_id, "explanationSpec": {"parameters": {"examples": {
            "gcsSource": {"uris": [path]}, "neighborCount": 10,
            "nearestNeighborSearchConfig": {"contentsDeltaUri": "", "config": config}}}}}
        self.upload(model, model_id)

    def upload(self, model: dict, model_id: str) -> None:
        with Client(self.target) as client:
            client.wait(client.upload_model(model, model_id=model_id), timeout=1800)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        self.log.close()


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
