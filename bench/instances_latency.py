"""bench_explain_latency.py --instances: Explain of feature instances through a SavedModel
example-based model, this tree's daemon against a baseline revision's, taking turns.
See bench_explain_latency.py's docstring for what it prints."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
import time

import grpc
import numpy as np
from google.protobuf import json_format, struct_pb2

from daemon import Daemon, batch_sizes, percentiles
from load_generator import run_load

from explaind.v1 import prediction_service_pb2, prediction_service_pb2_grpc

MODEL = "mlp"


def export_mlp(path: str, features: int, width: int, latent_dim: int, latent_is_output: bool) -> None:
    """Dense(width) ReLU x2 -> Dense "embedding" (latent_dim) -> Dense "logits" (10); exported
    with model.export. Outputs: "logits" alone, or {"embedding", "logits"}."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    keras.utils.set_random_seed(7)
    inputs = keras.Input((features,), name="features")
    h = keras.layers.Dense(width, activation="relu", name="hidden")(inputs)
    h = keras.layers.Dense(width, activation="relu", name="hidden_2")(h)
    z = keras.layers.Dense(latent_dim, activation="tanh", name="embedding")(h)
    logits = keras.layers.Dense(10, name="logits")(z)
    outputs = {"embedding": z, "logits": logits} if latent_is_output else logits
    keras.Model(inputs, outputs, name="mlp").export(path, verbose=False)


def model_payload(artifact: str, data: str, latent_dim: int, latent_is_output: bool) -> dict:
    config = {"dimensions": latent_dim, "distanceMeasureType": "SQUARED_L2_DISTANCE",
              "algorithmConfig": {"bruteForceConfig": {}}}
    # The Vertex notebooks' way for an output: no latentSpaceSource, the metadata's one output names it.
    metadata = {"outputs": {"embedding": {"outputTensorName": "embedding"}}} if latent_is_output else \
        {"latentSpaceSource": "embedding"}
    return {"displayName": MODEL, "artifactUri": artifact, "explanationSpec": {
        "parameters": {"examples": {"gcsSource": {"uris": [data]}, "neighborCount": 10,
                                    "nearestNeighborSearchConfig": {"contentsDeltaUri": "", "config": config}}},
        "metadata": metadata}}


def explain_requests(queries: np.ndarray) -> list:
    out = []
    for q in queries:
        r = prediction_service_pb2.ExplainRequest(name=f"models/{MODEL}")
        r.instances.append(json_format.ParseDict({"features": q.tolist()}, struct_pb2.Value()))
        out.append(r)
    return out


def baseline_env(source: str) -> dict:
    """The environment that makes `python -m explaind.server.main` run the checkout at `source`:
    its packages first on the path (the editable install of this tree comes after), no .pyc
    written into it."""
    paths = [os.path.join(source, "server"), os.path.join(source, "client")]
    for path in paths:
        if not os.path.isdir(os.path.join(path, "explaind")):
            raise SystemExit(f"--baseline-source: {source} has no server/explaind and client/explaind")
    return {"PYTHONPATH": os.pathsep.join(paths), "PYTHONDONTWRITEBYTECODE": "1"}


class Contender:
    """One revision's daemon, its timed calls and CPU summed over the rounds."""

    def __init__(self, label: str, env: dict | None):
        self.label, self.env = label, env
        self.latencies: list[float] = []
        self.cpu_s = 0.0
        self.batches = 0
        self.errors: dict[str, int] = {}
        self.ready_s: list[float] = []
        self.first_ms: list[float] = []
        self.second_ms: list[float] = []

    def start(self, store: str | None = None) -> Daemon:
        start = time.perf_counter()
        daemon = Daemon(store=store, env=self.env)          # the serving defaults (batching included)
        self.ready_s.append(time.perf_counter() - start)
        return daemon

    def timed_round(self, daemon: Daemon, requests: list, calls: int, clients: int) -> None:
        asyncio.run(run_load(daemon.target, requests, clients, min(50, calls)))       # warm-up
        before = daemon.histogram("explaind_batch_size", MODEL)
        cpu = daemon.cpu_seconds()
        _, latencies, errors = asyncio.run(run_load(daemon.target, requests, clients, calls))
        self.cpu_s += daemon.cpu_seconds() - cpu
        self.batches += batch_sizes(before, daemon.histogram("explaind_batch_size", MODEL))["batches"]
        self.latencies += latencies
        for code, n in errors.items():
            self.errors[code] = self.errors.get(code, 0) + n

    def first_calls(self, daemon: Daemon, requests: list) -> None:
        """The first Explain after the port opened (the model was loaded before), then the second."""
        with grpc.insecure_channel(daemon.target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            channel_ready = grpc.channel_ready_future(channel)
            channel_ready.result(timeout=30)
            for out, request in ((self.first_ms, requests[0]), (self.second_ms, requests[1])):
                start = time.perf_counter()
                stub.Explain(request, timeout=120)
                out.append(1000 * (time.perf_counter() - start))

    def row(self) -> dict:
        calls = max(1, len(self.latencies))
        return {**percentiles(self.latencies), "cpu_ms": 1000 * self.cpu_s / calls,
                "batches_per_call": self.batches / calls,
                "ready_s": float(np.median(self.ready_s)) if self.ready_s else float("nan"),
                "first_ms": float(np.median(self.first_ms)) if self.first_ms else float("nan"),
                "second_ms": float(np.median(self.second_ms)) if self.second_ms else float("nan")}


def run_instances(args) -> None:
    latent_is_output = args.latent == "output"
    work = tempfile.mkdtemp(prefix="explaind-bench-instances-")
    rng = np.random.default_rng(0)
    examples = rng.normal(size=(args.n, args.features)).astype(np.float32)
    queries = rng.normal(size=(max(args.calls, 64), args.features)).astype(np.float32)
    artifact = os.path.join(work, "mlp")
    export_mlp(artifact, args.features, args.width, args.latent_dim, latent_is_output)
    data = os.path.join(work, "examples.jsonl")
    with open(data, "w") as f:
        for row in examples:
            f.write(json.dumps({"features": row.tolist()}) + "\n")
    requests = explain_requests(queries)

    ours = Contender("this tree", None)
    contenders = [ours]
    if args.baseline_source:
        contenders.insert(0, Contender(f"baseline ({os.path.basename(os.path.abspath(args.baseline_source))})",
                                       baseline_env(args.baseline_source)))
    builder = ours.start()
    ours.ready_s.clear()          # a fresh store: nothing to load yet
    try:
        start = time.perf_counter()
        builder.upload(model_payload(artifact, data, args.latent_dim, latent_is_output), MODEL)
        build_s = time.perf_counter() - start
        store = builder.store
        # Turns: every daemon on the same store; a round each, then the next round.
        daemons = [builder if c is ours else c.start(store) for c in contenders]
        try:
            for _ in range(args.rounds):
                for contender, daemon in zip(contenders, daemons):
                    contender.timed_round(daemon, requests, args.calls, args.clients)
        finally:
            for daemon in daemons:
                if daemon is not builder:
                    daemon.stop()
    finally:
        builder.stop()
    for _ in range(args.restarts):
        for contender in contenders:
            daemon = contender.start(store)
            try:
                contender.first_calls(daemon, requests)
            finally:
                daemon.stop()
    shutil.rmtree(work, ignore_errors=True)

    latent = "one of the signature's outputs" if latent_is_output else "a layer (frozen graph)"
    print(f"Explain of feature instances: SavedModel MLP {args.features}-{args.width}-{args.width}-"
          f"{args.latent_dim}-10, latent {latent}; N={args.n} (built in {build_s:.0f} s), k=10 flat; "
          f"{args.clients} client(s), {args.rounds} rounds x {args.calls} calls per daemon, daemons taking "
          f"turns; {args.restarts} restart(s) each; {os.cpu_count()} cores (shared machine)")
    print(f"{'':22}{'p50 ms':>8}{'p99 ms':>8}{'CPU/call ms':>13}{'batches/call':>14}{'ready s':>9}"
          f"{'1st Explain ms':>16}{'2nd ms':>8}  errors")
    rows = [(c.label, c.row(), c.errors) for c in contenders]
    for label, r, errors in rows:
        print(f"{label:22}{r['p50']:8.2f}{r['p99']:8.2f}{r['cpu_ms']:13.3f}{r['batches_per_call']:14.2f}"
              f"{r['ready_s']:9.1f}{r['first_ms']:16.1f}{r['second_ms']:8.1f}  {errors or '-'}")
    if len(rows) == 2:
        (_, base, _), (_, mine, _) = rows
        print(f"{'this tree / baseline':22}{mine['p50'] / base['p50']:8.2f}{mine['p99'] / base['p99']:8.2f}"
              f"{mine['cpu_ms'] / base['cpu_ms']:13.2f}{mine['batches_per_call'] / base['batches_per_call']:14.2f}"
              f"{mine['ready_s'] / base['ready_s']:9.2f}{mine['first_ms'] / base['first_ms']:16.2f}"
              f"{mine['second_ms'] / base['second_ms']:8.2f}")
    sys.stdout.flush()
