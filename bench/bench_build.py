"""Builds through the daemon, per runner: embedding rate, the serving process's memory, index builds.

    .venv/bin/python bench/bench_build.py [--only embedding,memory,index] [--mlp-rows 200000]
        [--cnn-rows 10000] [--memory-rows 1000000] [--index-sizes 1000000,10000000] [--leaf-count 1000]

Every figure comes from real `explaind serve` processes on this machine, uploads
through the gRPC API, and the operation's own stages (polled every 50 ms):

- embedding: examples/s of the EMBEDDING stage for an MLP on tabular JSONL rows
  and a CNN on 32x32x3 TFRecord images, with --build-runner local (one build
  process; TensorFlow spreads over every core) and ray on a local Ray cluster
  of this machine's cores with 1 actor (all cores) and 2 actors (half each).
  "stage" is the whole stage (Ray's includes starting the actors and loading
  the model in each); "steady" is the rate between the progress reports at
  about 10% and 90% done (progress is written every 0.5 s). Both runners
  call the model on batches of 1024.
- memory: peak RSS of the serving process during a build of N precomputed 128-d
  embeddings (.npy, treeAh), --build-runner thread (in the serving process, as
  every build ran before the runners) against local (a build process), and the
  build process's own peak.
- index: BUILDING_INDEX time and the bytes the build stores, for N x 128
  synthetic clustered embeddings (treeAh, --leaf-count per leaf), local runner.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.daemon import Daemon  # noqa: E402
from explaind.client import Client  # noqa: E402
from explaind.server.builds.runners.memory import tree_rss  # noqa: E402
from explaind.v1 import model_service_pb2  # noqa: E402

Stage = model_service_pb2.UploadModelOperationMetadata.Stage
GiB = 2**30


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Watched:
    """An upload followed to its end: when each stage began, progress, and memory peaks."""

    def __init__(self, daemon: Daemon, model: dict, model_id: str, timeout: float = 7200):
        self.stages: dict[int, float] = {}
        self.progress: list[tuple[float, int]] = []
        self.serving_peak = self.build_peak = 0
        pid = daemon.proc.pid
        with Client(daemon.target) as client:
            start = time.monotonic()
            op = client.upload_model(model, model_id=model_id)
            meta = model_service_pb2.UploadModelOperationMetadata()
            while time.monotonic() - start < timeout:
                serving = _rss(pid)
                self.serving_peak = max(self.serving_peak, serving)
                self.build_peak = max(self.build_peak, tree_rss(pid) - serving)
                op = client.get_operation(op.name)
                op.metadata.Unpack(meta)
                now = time.monotonic() - start
                self.stages.setdefault(meta.stage, now)
                if meta.stage == Stage.EMBEDDING and (not self.progress or self.progress[-1][1] != meta.examples_embedded):
                    self.progress.append((now, meta.examples_embedded))
                if op.done:
                    break
                time.sleep(0.05)
            if op.HasField("error"):
                raise RuntimeError(f"{model_id}: {op.error.message}")
            self.total = time.monotonic() - start
            self.examples = meta.examples_total

    def _at(self, stage: int) -> float:
        # A stage shorter than a poll may go unseen: it began when the next one seen did.
        return min(t for s, t in self.stages.items() if s >= stage)

    def seconds(self, stage: int, until: int) -> float:
        return self._at(until) - self._at(stage)

    def embedding_rates(self) -> tuple[float, float]:
        stage = self.examples / self.seconds(Stage.EMBEDDING, Stage.BUILDING_INDEX)
        # Between the reports at about 10% and 90% done: the actors are up, the tail not yet reached.
        moving = [(t, n) for t, n in self.progress if 0.1 * self.examples <= n <= 0.9 * self.examples]
        if len(moving) >= 2 and moving[-1][1] > moving[0][1]:
            steady = (moving[-1][1] - moving[0][1]) / (moving[-1][0] - moving[0][0])
        else:
            steady = float("nan")
        return stage, steady


def _examples_model(artifact: str, uris: list[str], dimensions: int, latent: str = "", leaf_count: int = 1000) -> dict:
    examples = {"gcsSource": {"uris": uris}, "neighborCount": 10, "nearestNeighborSearchConfig": {
        "contentsDeltaUri": "", "config": {
            "dimensions": dimensions, "approximateNeighborsCount": 50, "distanceMeasureType": "SQUARED_L2_DISTANCE",
            "algorithmConfig": {"treeAhConfig": {"leafNodeEmbeddingCount": leaf_count,
                                                 "leafNodesToSearchPercent": 5}}}}}
    spec = {"parameters": {"examples": examples}}
    if latent:
        spec["metadata"] = {"latentSpaceSource": latent}
    return {"displayName": "bench", "artifactUri": artifact, "explanationSpec": spec}


# ------------------------------------------------------------------ models and data


def mlp(path: str) -> str:
    import keras
    keras.utils.set_random_seed(1)
    x = inp = keras.Input((32,), name="features")
    x = keras.layers.Dense(256, activation="relu")(x)
    x = keras.layers.Dense(128, activation="relu")(x)
    z = keras.layers.Dense(64, name="embedding")(x)
    keras.Model(inp, keras.layers.Dense(10, name="logits")(z)).export(path, verbose=False)
    return path


def cnn(path: str) -> str:
    import keras
    keras.utils.set_random_seed(1)
    x = inp = keras.Input((32, 32, 3), name="image")
    for filters in (32, 64):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    z = keras.layers.Dense(128, name="embedding")(x)
    keras.Model(inp, keras.layers.Dense(10, name="logits")(z)).export(path, verbose=False)
    return path


def tabular_rows(folder: str, n: int, parts: int = 4) -> list[str]:
    import json
    rng = np.random.default_rng(0)

    def write(path, rows):
        with open(path, "w") as f:
            for _ in range(rows):
                f.write(json.dumps({"features": rng.normal(size=32).round(4).tolist()}) + "\n")
    return _parts(folder, "rows", "jsonl", n, parts, write)


def image_records(folder: str, n: int, parts: int = 4) -> list[str]:
    import tensorflow as tf
    rng = np.random.default_rng(0)

    def write(path, rows):
        with tf.io.TFRecordWriter(path) as w:
            for _ in range(rows):
                image = rng.random(32 * 32 * 3, dtype=np.float32)
                w.write(tf.train.Example(features=tf.train.Features(feature={
                    "image": tf.train.Feature(float_list=tf.train.FloatList(value=image))})).SerializeToString())
    return _parts(folder, "images", "tfrecord", n, parts, write)


def _parts(folder: str, name: str, suffix: str, n: int, parts: int, write) -> list[str]:
    paths = [os.path.join(folder, f"{name}-{p}.{suffix}") for p in range(parts)]
    for path in paths:
        write(path, n // parts)
    return paths


def clustered(path: str, n: int, d: int = 128, clusters: int = 1000, chunk: int = 1_000_000) -> str:
    """n x d float32 around `clusters` centres, written in chunks (10M x 128 is 5 GB)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(clusters, d)).astype(np.float32) * 4
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    for start in range(0, n, chunk):
        rows = min(chunk, n - start)
        out[start:start + rows] = centres[rng.integers(0, clusters, rows)] + rng.normal(size=(rows, d)).astype(np.float32)
    out.flush()
    del out
    return path


def _folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


# ------------------------------------------------------------------ sections


def embedding_section(args, work: str) -> None:
    import ray

    print(f"\n== Embedding stage: examples/s (this {os.cpu_count()}-core CPU machine) ==")
    cases = []
    if "mlp" in args.models:
        cases.append(("MLP 32->256->128->64, tabular JSONL", mlp(os.path.join(work, "mlp")),
                      tabular_rows(work, args.mlp_rows), 64, "embedding"))
    if "cnn" in args.models:
        cases.append(("CNN 4 conv + dense 128, 32x32x3 TFRecord", cnn(os.path.join(work, "cnn")),
                      image_records(work, args.cnn_rows), 128, "embedding"))
    cores = os.cpu_count()
    ray.init(num_cpus=cores, object_store_memory=512 * 2**20, include_dashboard=False, log_to_driver=False)
    address = ray.get_runtime_context().gcs_address
    runs = [("local", []),
            ("ray, 1 actor", ["--build-runner", "ray", "--ray-address", address, "--ray-workers", "1",
                              "--ray-cpus-per-worker", str(cores)]),
            ("ray, 2 actors", ["--build-runner", "ray", "--ray-address", address, "--ray-workers", "2",
                               "--ray-cpus-per-worker", str(cores / 2)])]
    try:
        for title, artifact, uris, dims, latent in cases:
            print(f"{title}: {args.mlp_rows if 'MLP' in title else args.cnn_rows} examples in {len(uris)} files")
            print(f"  {'runner':<16}{'stage ex/s':>12}{'steady ex/s':>13}{'stage s':>9}{'upload s':>10}")
            base = None
            for name, flags in runs:
                # One batch size for both: bigger model calls are cheaper per example.
                daemon = Daemon("--heartbeat-seconds", "0.5", "--ray-batch-size", "1024", "--embed-batch-size",
                                "1024", *flags)
                try:
                    w = Watched(daemon, _examples_model(artifact, uris, dims, latent), "m")
                finally:
                    daemon.stop()
                    shutil.rmtree(daemon.dir, ignore_errors=True)
                stage, steady = w.embedding_rates()
                base = base or stage
                print(f"  {name:<16}{stage:>12,.0f}{steady:>13,.0f}{w.seconds(Stage.EMBEDDING, Stage.BUILDING_INDEX):>9.1f}"
                      f"{w.total:>10.1f}   ({stage / base:.2f}x local)", flush=True)
    finally:
        ray.shutdown()


def memory_section(args, work: str) -> None:
    n = args.memory_rows
    print(f"\n== Serving process memory during a build of {n:,} x 128 precomputed embeddings (.npy, treeAh) ==")
    path = clustered(os.path.join(work, "memory.npy"), n)
    print(f"  {'runner':<10}{'serving peak':>14}{'build process peak':>20}{'build s':>9}")
    for runner in ("thread", "local"):
        daemon = Daemon("--build-runner", runner)
        try:
            idle = _rss(daemon.proc.pid)
            w = Watched(daemon, _examples_model("", [path], 128), "m")
        finally:
            daemon.stop()
            shutil.rmtree(daemon.dir, ignore_errors=True)
        build = f"{w.build_peak / GiB:.2f} GiB" if runner == "local" else "(in serving)"
        print(f"  {runner:<10}{w.serving_peak / GiB:>10.2f} GiB{build:>20}{w.total:>9.1f}"
              f"   (serving process idle: {idle / GiB:.2f} GiB)", flush=True)
    os.remove(path)


def index_section(args, work: str) -> None:
    print(f"\n== Index build: N x 128 clustered embeddings, treeAh ({args.leaf_count} per leaf: nlist = N / "
          f"{args.leaf_count}), local runner ==")
    print(f"  {'N':>12}{'read+embed s':>14}{'index s':>9}{'publish s':>11}{'store bytes':>17}{'bytes/vector':>14}"
          f"{'build peak':>12}")
    for n in args.index_sizes:
        free = shutil.disk_usage(work).free
        need = n * 128 * 4
        with open("/proc/meminfo") as f:
            available = int(next(line for line in f if line.startswith("MemAvailable")).split()[1]) * 1024
        if need * 2.6 > available or need * 3 > free:
            print(f"  {n:>12,}  skipped: needs about {need * 2.6 / GiB:.1f} GiB of memory, {available / GiB:.1f} "
                  "available", flush=True)
            continue
        path = clustered(os.path.join(work, f"index-{n}.npy"), n)
        daemon = Daemon()
        try:
            w = Watched(daemon, _examples_model("", [path], 128, leaf_count=args.leaf_count), "m")
            stored = _folder_bytes(os.path.join(daemon.store, "models", "m", "builds"))
        finally:
            daemon.stop()
            shutil.rmtree(daemon.dir, ignore_errors=True)
            os.remove(path)
        print(f"  {n:>12,}{w.seconds(Stage.READING_EXAMPLES, Stage.BUILDING_INDEX):>14.1f}"
              f"{w.seconds(Stage.BUILDING_INDEX, Stage.PUBLISHING):>9.1f}{w.seconds(Stage.PUBLISHING, Stage.DONE):>11.1f}"
              f"{stored:>17,}{stored / n:>14.0f}{w.build_peak / GiB:>9.2f} GiB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="embedding,memory,index")
    parser.add_argument("--models", default="mlp,cnn", help="the embedding section's models")
    parser.add_argument("--mlp-rows", type=int, default=200_000)
    parser.add_argument("--cnn-rows", type=int, default=10_000)
    parser.add_argument("--memory-rows", type=int, default=1_000_000)
    parser.add_argument("--index-sizes", type=lambda s: [int(v) for v in s.split(",")], default=[1_000_000, 10_000_000])
    parser.add_argument("--leaf-count", type=int, default=1000, help="treeAh leafNodeEmbeddingCount of the index section")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    work = tempfile.mkdtemp(prefix="explaind-bench-build-")
    try:
        for section in args.only.split(","):
            {"embedding": embedding_section, "memory": memory_section, "index": index_section}[section](args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
