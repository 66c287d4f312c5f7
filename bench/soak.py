"""Soak: a steady Explain rate against one daemon for a fixed time while models
are uploaded, updated and deleted; watches the daemon for leaks.

Every `--churn-seconds` a new version of a churning model is uploaded under a
new id (UpdateExplanationDataset is not there yet), traffic moves to it, and
the old one is deleted. Both kinds of model run a TensorFlow SavedModel, so
loads and unloads of TensorFlow graphs and FAISS indexes are part of the
churn. Calls go through the SDK's channel options (its retry policy).

Prints a line per minute (calls, failed calls, p50/p99 latency, the daemon's
RSS, open file descriptors and threads, models loaded, uploads done) and a
verdict against the goals: RSS grows less than 5% after the warm-up, file
descriptors and threads stay flat, no call fails.

    python bench/soak.py [--minutes 10] [--qps 100] [--churn-seconds 30] [--warmup-minutes 2]
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import sys
import tempfile
import threading
import time
import urllib.request

import grpc
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon import Daemon  # noqa: E402

from explaind.client import Client  # noqa: E402
from explaind.client.client import MAX_MESSAGE_BYTES, _value  # noqa: E402
from explaind.client.retries import channel_options  # noqa: E402
from explaind.v1 import prediction_service_pb2, prediction_service_pb2_grpc  # noqa: E402

FEATURES, LATENT = 8, 16


def build_savedmodel(path: str) -> str:
    """A small Keras model whose layer "embedding" is the latent space."""
    import keras
    inputs = keras.Input(shape=(FEATURES,), name="features")
    hidden = keras.layers.Dense(32, activation="relu")(inputs)
    embedding = keras.layers.Dense(LATENT, name="embedding")(hidden)
    outputs = keras.layers.Dense(3, activation="softmax")(embedding)
    keras.Model(inputs, outputs).export(path, verbose=False)
    return path


def write_examples(path: str, n: int, seed: int) -> str:
    rows = np.random.default_rng(seed).normal(size=(n, FEATURES))
    with open(path, "w") as f:
        for i, row in enumerate(rows):
            f.write(json.dumps({"id": f"e{i}", "features": row.round(5).tolist()}) + "\n")
    return path


def model_json(artifact: str, data: str) -> dict:
    return {"displayName": "soak", "artifactUri": artifact, "explanationSpec": {
        "parameters": {"examples": {"gcsSource": {"uris": [data]}, "neighborCount": 10,
                                    "nearestNeighborSearchConfig": {"contentsDeltaUri": "", "config": {
                                        "dimensions": LATENT, "distanceMeasureType": "SQUARED_L2_DISTANCE",
                                        "algorithmConfig": {"treeAhConfig": {"leafNodeEmbeddingCount": 500,
                                                                             "leafNodesToSearchPercent": 20}}}}}},
        "metadata": {"latentSpaceSource": "embedding"}}}


class Process:
    """The daemon's RSS, open descriptors and threads, from /proc (Linux)."""

    def __init__(self, pid: int):
        self.pid = pid

    def sample(self) -> dict:
        status = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                status[key] = value.strip()
        return {"rss_mb": int(status["VmRSS"].split()[0]) / 1024, "threads": int(status["Threads"]),
                "fds": len(os.listdir(f"/proc/{self.pid}/fd"))}


class Minute:
    def __init__(self):
        self.latencies: list[float] = []
        self.failed: collections.Counter = collections.Counter()
        self.samples: list[dict] = []
        self.uploads = 0


class Soak:
    def __init__(self, args, daemon: Daemon, steady: str):
        self.args = args
        self.daemon = daemon
        self.proc = Process(daemon.proc.pid)
        self.current = {"steady": steady, "churn": ""}     # model ids the load calls
        self.start = time.monotonic()
        self.minutes: dict[int, Minute] = collections.defaultdict(Minute)
        self.stop = threading.Event()
        self.churn_errors: list[str] = []
        self.backlog_max = 0

    def minute(self) -> Minute:
        return self.minutes[int((time.monotonic() - self.start) // 60)]

    # --- steady load (open loop: a call every 1/qps seconds, whatever the answers) ---
    async def load(self) -> None:
        rng = np.random.default_rng(1)
        queries = rng.normal(size=(256, FEATURES))
        options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)] + channel_options(MAX_MESSAGE_BYTES)
        async with grpc.aio.insecure_channel(self.daemon.target, options=options) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            inflight: set[asyncio.Task] = set()
            interval = 1.0 / self.args.qps
            next_at = time.monotonic()
            n = 0
            while not self.stop.is_set():
                model = self.current["churn"] if self.current["churn"] and n % 5 == 4 else self.current["steady"]
                request = prediction_service_pb2.ExplainRequest(
                    name=f"models/{model}", instances=[_value({"features": queries[n % len(queries)].tolist()})])
                task = asyncio.ensure_future(self.call(stub, request))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
                self.backlog_max = max(self.backlog_max, len(inflight))
                n += 1
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            await asyncio.gather(*inflight, return_exceptions=True)

    async def call(self, stub, request) -> None:
        t0 = time.perf_counter()
        try:
            response = await stub.Explain(request, timeout=30)
            assert len(response.explanations[0].neighbors) == 10
            self.minute().latencies.append(time.perf_counter() - t0)
        except grpc.aio.AioRpcError as e:
            self.minute().failed[f"{e.code().name}: {e.details()[:80]}"] += 1

    # --- churn: a new version every churn_seconds, then the old one deleted ---
    def churn(self, artifact: str, folder: str) -> None:
        version = 0
        with Client(self.daemon.target) as client:
            while not self.stop.wait(0 if version == 0 else self.args.churn_seconds):
                version += 1
                new = f"churn-{version}"
                try:
                    data = write_examples(os.path.join(folder, f"{new}.jsonl"), self.args.churn_examples, version)
                    client.wait(client.upload_model(model_json(artifact, data), model_id=new), timeout=600)
                    self.minute().uploads += 1
                    old, self.current["churn"] = self.current["churn"], new
                    if old:
                        time.sleep(2)                     # calls already sent to the old id finish first
                        client.delete_model(old)
                    os.remove(data)
                except Exception as e:  # noqa: BLE001 - reported at the end
                    self.churn_errors.append(f"{new}: {type(e).__name__}: {e}")

    def sampler(self) -> None:
        while not self.stop.wait(self.args.sample_seconds):
            sample = self.proc.sample()
            sample["models"] = self._models_loaded()
            self.minute().samples.append(sample)

    def _models_loaded(self) -> int:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{self.daemon.metrics_port}/metrics", timeout=5).read()
        except OSError:
            return -1
        for line in text.decode().splitlines():
            if line.startswith("explaind_models_loaded "):
                return int(float(line.split()[1]))
        return -1


def report(soak: Soak, args) -> bool:
    print(f"{'min':>3} {'calls':>6} {'failed':>6} {'p50 ms':>7} {'p99 ms':>7} {'RSS MB':>7} {'fds':>5} "
          f"{'thr':>4} {'models':>6} {'uploads':>7}")
    rows = []
    for m in sorted(soak.minutes):
        minute = soak.minutes[m]
        if not minute.samples:
            continue
        ms = np.asarray(minute.latencies) * 1000
        last = minute.samples[-1]
        row = dict(minute=m, calls=len(ms) + sum(minute.failed.values()), failed=sum(minute.failed.values()),
                   p50=float(np.percentile(ms, 50)) if len(ms) else float("nan"),
                   p99=float(np.percentile(ms, 99)) if len(ms) else float("nan"),
                   rss=float(np.mean([s["rss_mb"] for s in minute.samples])),
                   fds=(min(s["fds"] for s in minute.samples), max(s["fds"] for s in minute.samples)),
                   threads=(min(s["threads"] for s in minute.samples), max(s["threads"] for s in minute.samples)),
                   models=last["models"], uploads=minute.uploads)
        rows.append(row)
        print(f"{m + 1:>3} {row['calls']:>6} {row['failed']:>6} {row['p50']:>7.2f} {row['p99']:>7.2f} "
              f"{row['rss']:>7.1f} {_span(row['fds']):>5} {_span(row['threads']):>4} {row['models']:>6} "
              f"{row['uploads']:>7}")
    failed = collections.Counter()
    for minute in soak.minutes.values():
        failed.update(minute.failed)
    after = [r for r in rows if r["minute"] >= args.warmup_minutes]
    ok = True
    if len(after) >= 2:
        growth = (after[-1]["rss"] - after[0]["rss"]) / after[0]["rss"] * 100
        fds = (min(r["fds"][0] for r in after), max(r["fds"][1] for r in after))
        threads = (min(r["threads"][0] for r in after), max(r["threads"][1] for r in after))
        print(f"after the {args.warmup_minutes}-minute warm-up: RSS {after[0]['rss']:.1f} -> {after[-1]['rss']:.1f} MB "
              f"({growth:+.1f}%), fds {fds[0]}..{fds[1]}, threads {threads[0]}..{threads[1]}")
        ok &= growth < 5
        # Flat: what a build or a load opens for a while is back by the next minute.
        ok &= after[-1]["fds"][0] <= after[0]["fds"][1] and after[-1]["threads"][0] <= after[0]["threads"][1]
    else:
        print("run too short to judge growth after the warm-up")
        ok = False
    total = sum(r["calls"] for r in rows)
    print(f"calls {total}, failed {sum(failed.values())}" + "".join(f"\n  {n} x {k}" for k, n in failed.items()))
    print(f"uploads {sum(r['uploads'] for r in rows)}, churn errors {len(soak.churn_errors)}"
          + "".join(f"\n  {e}" for e in soak.churn_errors[:5]) + f"; most calls in flight {soak.backlog_max}")
    ok &= not failed and not soak.churn_errors
    print("goals met" if ok else "goals NOT met")
    return ok


def _span(pair: tuple[int, int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}-{pair[1]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--qps", type=float, default=100)
    parser.add_argument("--churn-seconds", type=float, default=30)
    parser.add_argument("--churn-examples", type=int, default=5000)
    parser.add_argument("--steady-examples", type=int, default=20000)
    parser.add_argument("--warmup-minutes", type=int, default=2)
    parser.add_argument("--sample-seconds", type=float, default=5)
    args = parser.parse_args()

    folder = tempfile.mkdtemp(prefix="explaind-soak-")
    artifact = build_savedmodel(os.path.join(folder, "model"))
    steady_data = write_examples(os.path.join(folder, "steady.jsonl"), args.steady_examples, 0)
    daemon = Daemon("--store-poll-seconds", "1")
    try:
        daemon.upload(model_json(artifact, steady_data), "steady")
        soak = Soak(args, daemon, "steady")
        print(f"daemon pid {daemon.proc.pid}; {args.qps:.0f} Explain/s for {args.minutes:g} min, a new model version "
              f"every {args.churn_seconds:g} s ({args.churn_examples} examples), steady model "
              f"{args.steady_examples} examples", flush=True)
        threads = [threading.Thread(target=soak.churn, args=(artifact, folder), daemon=True),
                   threading.Thread(target=soak.sampler, daemon=True)]
        for t in threads:
            t.start()
        timer = threading.Timer(args.minutes * 60, soak.stop.set)
        timer.start()
        asyncio.run(soak.load())
        for t in threads:
            t.join(660)
        return 0 if report(soak, args) else 1
    finally:
        daemon.stop()


if __name__ == "__main__":
    sys.exit(main())
