"""Batch explanation jobs through the daemon: rows per second against a loop of
online Explain calls, Ray's scaling, and the job process's memory.

    .venv/bin/python bench/bench_batch.py [--only throughput,ray,memory] [--rows 200000]
        [--ray-rows 50000] [--memory-rows 100000,1000000] [--steps 50] [--cold-job-process]

Every figure comes from real `explaind serve` processes on this machine and is
compared within the same run:

- throughput: rows/s of a job (--build-runner local: one build process) for a
  tabular MLP (16 features, two hidden layers of 64, 3 outputs) with
  integrated gradients at --steps steps, and for an example-based model (the
  same MLP's last hidden layer as latent space, 20,000 examples, a flat
  index, 10 neighbors), --rows rows of JSONL; against a loop of explaind.v1
  Explain calls of the largest batch the daemon allows
  (--max-instances-per-request, 1024) over the same rows, each call waiting
  for the previous one. "job" is from the request to the job's end (the
  process start, the model load and the row count included); "steady" is
  the rate between the progress reports at about 10% and 90% of the rows.
  The daemon keeps its default spare build process (TensorFlow imported
  ahead), so a job starts without the import; the bench waits --spare-wait
  seconds for it before each figure. --cold-job-process: no spare, every job
  starts a process cold (the import in the job's time).
- ray: the IG job on a local Ray cluster of this machine's cores. Scaling out:
  1 actor and 2 actors of the same size (half the cores each), so the second
  actor brings its own cores, as it does on a cluster. Splitting: 1 actor of
  all the cores against the same 2 actors, which share the one actor's cores
  (and the driver's and the readers'). Steady rows/s and the ratios, and the
  same from a least-squares fit over every progress report between 10% and
  90% (a report comes per block of --ray-batch-size rows; --ray-rows sets how
  many there are).
- memory: the peak resident memory of the job's process (with its children)
  for each --memory-rows count of the example-based job: flat in the row count
  when the rows stream.
"""
from __future__ import annotations

import argparse
import json
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
from explaind.v1 import batch_service_pb2  # noqa: E402

FEATURES = 16
MAX_BATCH = 1024        # the daemon's --max-instances-per-request default
GiB = 2**30


def mlp(path: str) -> str:
    """A random tanh MLP, FEATURES -> 64 -> 64 (layer "embedding") -> 3."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((FEATURES,), name="features")
    hidden = keras.layers.Dense(64, activation="tanh")(inputs)
    hidden = keras.layers.Dense(64, activation="tanh", name="embedding")(hidden)
    keras.Model(inputs, keras.layers.Dense(3)(hidden)).export(path, verbose=False)
    return path


def rows_file(path: str, n: int, seed: int = 1) -> str:
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        for start in range(0, n, 100_000):
            block = rng.normal(size=(min(100_000, n - start), FEATURES)).round(5)
            f.write("".join(json.dumps({"features": r}) + "\n" for r in block.tolist()))
    return path


def ig_model(artifact: str, steps: int) -> dict:
    return {"displayName": "mlp-ig", "artifactUri": artifact, "explanationSpec": {
        "parameters": {"integratedGradientsAttribution": {"stepCount": steps}},
        "metadata": {"inputs": {"features": {"inputTensorName": "features"}},
                     "outputs": {"scores": {"outputTensorName": "output_0"}}}}}


def examples_model(artifact: str, examples: str) -> dict:
    config = {"dimensions": 64, "distanceMeasureType": "SQUARED_L2_DISTANCE",
              "algorithmConfig": {"bruteForceConfig": {}}}
    return {"displayName": "mlp-examples", "artifactUri": artifact, "explanationSpec": {
        "parameters": {"examples": {"gcsSource": {"uris": [examples]}, "neighborCount": 10,
                                    "nearestNeighborSearchConfig": {"contentsDeltaUri": "", "config": config}}},
        "metadata": {"latentSpaceSource": "embedding"}}}


class WatchedJob:
    """A batch job followed to its end: its progress and its process's peak memory."""

    def __init__(self, daemon: Daemon, model_id: str, path: str, out: str, labels: dict | None = None,
                 timeout: float = 7200):
        self.progress: list[tuple[float, int]] = []
        self.peak = 0
        serving_pid = daemon.proc.pid
        with Client(daemon.target) as client:
            start = time.monotonic()
            op = client.batch_explain(model_id, [path], out, labels=labels)
            meta = batch_service_pb2.BatchExplainOperationMetadata()
            while time.monotonic() - start < timeout:
                self.peak = max(self.peak, tree_rss(serving_pid) - _rss(serving_pid))
                op = client.get_operation(op.name)
                op.metadata.Unpack(meta)
                done = meta.rows_succeeded + meta.rows_failed
                if meta.rows_total and (not self.progress or self.progress[-1][1] != done):
                    self.progress.append((time.monotonic() - start, done))
                if op.done:
                    break
                time.sleep(0.05)
            self.seconds = time.monotonic() - start
        if op.HasField("error"):
            raise RuntimeError(f"{model_id}: {op.error.message}")
        self.rows = meta.rows_total
        self.failed = meta.rows_failed

    @property
    def rate(self) -> float:
        return self.rows / self.seconds

    @property
    def fitted(self) -> float:
        """The least-squares slope of rows against time over the progress reports between 10%
        and 90% of the rows: every report counts, not only the two ends (which a Ray job's
        few, block-sized reports make jumpy)."""
        moving = np.array([(t, n) for t, n in self.progress if 0.1 * self.rows <= n <= 0.9 * self.rows])
        if len(moving) < 3:
            return float("nan")
        return float(np.polyfit(moving[:, 0], moving[:, 1], 1)[0])

    @property
    def steady(self) -> float:
        moving = [(t, n) for t, n in self.progress if 0.1 * self.rows <= n <= 0.9 * self.rows]
        if len(moving) >= 2 and moving[-1][1] > moving[0][1]:
            return (moving[-1][1] - moving[0][1]) / (moving[-1][0] - moving[0][0])
        return float("nan")


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def online_loop(daemon: Daemon, model_id: str, path: str) -> float:
    """Seconds for Explain calls of MAX_BATCH rows, one after another, over the file's rows."""
    with open(path) as f:
        rows = [json.loads(line) for line in f]
    with Client(daemon.target) as client:
        client.explain(model_id, rows[:8], timeout=600)             # loaded and warm, as the job's model is not
        start = time.monotonic()
        for i in range(0, len(rows), MAX_BATCH):
            client.explain(model_id, rows[i:i + MAX_BATCH], timeout=600)
        return time.monotonic() - start


def upload(daemon: Daemon, model: dict, model_id: str) -> None:
    with Client(daemon.target) as client:
        client.wait(client.upload_model(model, model_id=model_id), timeout=3600)


def throughput_section(args, work: str, artifact: str) -> None:
    print(f"\n== Throughput: {args.rows:,} rows, local runner vs a loop of Explain calls of {MAX_BATCH} "
          f"(this {os.cpu_count()}-core machine) ==")
    path = rows_file(os.path.join(work, "rows.jsonl"), args.rows)
    examples = rows_file(os.path.join(work, "examples.jsonl"), 20_000, seed=2)
    spare = () if args.cold_job_process else ("--build-spare-process", "true")
    daemon = Daemon("--heartbeat-seconds", "0.5", *spare)
    try:
        upload(daemon, ig_model(artifact, args.steps), "ig")
        upload(daemon, examples_model(artifact, examples), "ex")
        print(f"  (job processes: {'a spare started ahead' if spare else 'started cold'})")
        print(f"  {'model':<22}{'online rows/s':>14}{'job rows/s':>12}{'steady':>10}{'job s':>8}{'online s':>10}"
              f"{'job / online':>14}")
        for title, model_id in ((f"MLP, IG {args.steps} steps", "ig"), ("MLP, 10 neighbors", "ex")):
            if spare:
                time.sleep(args.spare_wait)           # the spare's import done before anything is timed
            online = online_loop(daemon, model_id, path)
            job = WatchedJob(daemon, model_id, path, os.path.join(work, f"out-{model_id}"))
            print(f"  {title:<22}{args.rows / online:>14,.0f}{job.rate:>12,.0f}{job.steady:>10,.0f}"
                  f"{job.seconds:>8.1f}{online:>10.1f}{job.rate / (args.rows / online):>13.2f}x"
                  f"   (steady {job.steady / (args.rows / online):.2f}x)", flush=True)
    finally:
        daemon.stop()
        shutil.rmtree(daemon.dir, ignore_errors=True)


def ray_section(args, work: str, artifact: str) -> None:
    import ray

    cores = os.cpu_count()
    half = cores / 2
    print(f"\n== Ray: the IG job over {args.ray_rows:,} rows: actors of {half:g} CPUs (1 and 2), and 1 actor of "
          f"all {cores} ==")
    path = rows_file(os.path.join(work, "ray-rows.jsonl"), args.ray_rows)
    ray.init(num_cpus=cores, object_store_memory=512 * 2**20, include_dashboard=False, log_to_driver=False)
    address = ray.get_runtime_context().gcs_address
    try:
        print(f"  {'actors':<16}{'job rows/s':>12}{'steady rows/s':>15}{'fitted rows/s':>15}{'reports':>9}"
              f"{'job s':>8}")
        steady, fitted = {}, {}
        for actors, cpus in ((1, half), (2, half), (1, cores)):
            daemon = Daemon("--heartbeat-seconds", "0.5", "--build-runner", "ray", "--ray-address", address,
                            "--ray-workers", str(actors), "--ray-cpus-per-worker", f"{cpus:g}",
                            "--ray-batch-size", "2048")
            try:
                upload(daemon, ig_model(artifact, args.steps), "ig")
                job = WatchedJob(daemon, "ig", path, os.path.join(work, f"ray-{actors}-{cpus:g}"))
            finally:
                daemon.stop()
                shutil.rmtree(daemon.dir, ignore_errors=True)
            steady[actors, cpus], fitted[actors, cpus] = job.steady, job.fitted
            reports = sum(0.1 * job.rows <= n <= 0.9 * job.rows for _, n in job.progress)
            title = f"{actors} x {cpus:g} CPU"
            print(f"  {title:<16}{job.rate:>12,.0f}{job.steady:>15,.0f}{job.fitted:>15,.0f}{reports:>9}"
                  f"{job.seconds:>8.1f}", flush=True)
        print(f"  scaling out, 2 actors / 1 actor of {half:g} CPUs: steady {steady[2, half] / steady[1, half]:.2f}x, "
              f"fitted {fitted[2, half] / fitted[1, half]:.2f}x")
        print(f"  splitting, 2 actors of {half:g} / 1 actor of {cores}: steady "
              f"{steady[2, half] / steady[1, cores]:.2f}x, fitted {fitted[2, half] / fitted[1, cores]:.2f}x")
    finally:
        ray.shutdown()


def memory_section(args, work: str, artifact: str) -> None:
    print("\n== Memory: the job process's peak resident memory (with its children), example-based job ==")
    examples = rows_file(os.path.join(work, "examples.jsonl"), 20_000, seed=2)
    daemon = Daemon("--heartbeat-seconds", "0.5")
    try:
        upload(daemon, examples_model(artifact, examples), "ex")
        print(f"  {'rows':>12}{'peak':>12}{'job s':>9}{'rows/s':>9}")
        peaks = []
        for n in args.memory_rows:
            path = rows_file(os.path.join(work, f"memory-{n}.jsonl"), n)
            job = WatchedJob(daemon, "ex", path, os.path.join(work, f"memory-out-{n}"))
            peaks.append(job.peak)
            print(f"  {n:>12,}{job.peak / GiB:>8.2f} GiB{job.seconds:>9.1f}{job.rate:>9,.0f}", flush=True)
            os.remove(path)
            shutil.rmtree(os.path.join(work, f"memory-out-{n}"), ignore_errors=True)
        print(f"  largest / smallest peak: {peaks[-1] / peaks[0]:.2f} for {args.memory_rows[-1] / args.memory_rows[0]:.0f}x "
              "the rows")
    finally:
        daemon.stop()
        shutil.rmtree(daemon.dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="throughput,ray,memory")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--ray-rows", type=int, default=50_000)
    parser.add_argument("--memory-rows", default="100000,1000000")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--cold-job-process", action="store_true",
                        help="throughput: no spare build process (each job imports TensorFlow cold)")
    parser.add_argument("--spare-wait", type=float, default=20.0)
    args = parser.parse_args()
    args.memory_rows = [int(n) for n in args.memory_rows.split(",")]
    sections = set(args.only.split(","))
    work = tempfile.mkdtemp(prefix="explaind-bench-batch-")
    try:
        artifact = mlp(os.path.join(work, "mlp"))
        if "throughput" in sections:
            throughput_section(args, work, artifact)
        if "ray" in sections:
            ray_section(args, work, artifact)
        if "memory" in sections:
            memory_section(args, work, artifact)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
