"""SIGTERM under load: client threads send Explain continuously to a bare
`explaind serve` (no preStop sleep, no retry policy), the daemon gets SIGTERM;
prints, per run, by status code: the calls in flight when the signal came and
the calls sent between the signal and the exit; the exit code and the time to
exit.

What must hold: only OK and UNAVAILABLE (a status a retry policy retries),
exit code 0 within the grace period.

    python bench/sigterm_under_load.py [--threads 32] [--runs 5] [--grace 10]
"""
from __future__ import annotations

import argparse
import collections
import os
import signal
import sys
import threading
import time

import grpc
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon import Daemon, explain_requests  # noqa: E402

from explaind.v1 import prediction_service_pb2_grpc  # noqa: E402


class Hammer:
    """`threads` clients, each on its own connection and without retries (as many
    independent clients would be), send Explain back to back until `stop()`.
    `counts["in flight"]` and `counts["sent"]`: status codes of the calls in flight
    when `mark()` was called and of those sent after it."""

    def __init__(self, target: str, requests: list, threads: int):
        self.counts = {"in flight": collections.Counter(), "sent": collections.Counter()}
        self.ok = 0
        self._marked, self._stopped, self._lock = threading.Event(), threading.Event(), threading.Lock()
        self._threads = [threading.Thread(target=self._client, args=(target, requests, i)) for i in range(threads)]

    def start(self) -> "Hammer":
        for t in self._threads:
            t.start()
        return self

    def mark(self) -> None:
        self._marked.set()

    def stop(self) -> None:
        self._stopped.set()
        for t in self._threads:
            t.join(60)

    def _client(self, target: str, requests: list, i: int) -> None:
        options = [("grpc.use_local_subchannel_pool", 1), ("grpc.enable_retries", 0)]
        with grpc.insecure_channel(target, options=options) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            n = i
            while not self._stopped.is_set():
                before = not self._marked.is_set()
                try:
                    stub.Explain(requests[n % len(requests)], timeout=20)
                    code = "OK"
                except grpc.RpcError as e:
                    code = e.code().name
                    time.sleep(0.005)
                with self._lock:
                    self.ok += code == "OK"
                    if self._marked.is_set():
                        self.counts["in flight" if before else "sent"][code] += 1
                n += 1


def one_run(threads: int, grace: float, warmup_s: float = 2.0) -> tuple[dict, int, float]:
    rng = np.random.default_rng(0)
    daemon = Daemon("--shutdown-grace-seconds", str(grace))
    daemon.upload_embeddings(rng.normal(size=(2000, 16)).astype(np.float32), "m")
    hammer = Hammer(daemon.target, explain_requests(rng.normal(size=(50, 16)).astype(np.float32), "m"), threads)
    hammer.start()
    time.sleep(warmup_s)
    hammer.mark()
    t0 = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    code = daemon.proc.wait(grace + 30)
    exit_s = time.monotonic() - t0
    hammer.stop()
    daemon.log.close()
    return hammer.counts, code, exit_s


def _codes(counter: collections.Counter) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counter.items())) or "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--grace", type=float, default=10.0)
    args = parser.parse_args()
    total: collections.Counter = collections.Counter()
    for run in range(args.runs):
        counts, code, exit_s = one_run(args.threads, args.grace)
        for group in counts.values():
            total.update(group)
        print(f"run {run}: exit code {code} after {exit_s:.2f}s; "
              + "; ".join(f"{name}: {_codes(group)}" for name, group in counts.items()), flush=True)
    print(f"{args.threads} threads, {args.runs} runs, every call after SIGTERM: {_codes(total)}")
    bad = set(total) - {"OK", "UNAVAILABLE"}
    print("only OK and UNAVAILABLE" if not bad else f"FAILED: also {sorted(bad)}")


if __name__ == "__main__":
    main()
