#!/usr/bin/env python3
"""Fuzz a real explaind daemon for as long as you like (CI runs a minute of it:
tests/integration/test_fuzz.py).

Starts `explaind serve` on loopback with bearer tokens, an allowed data folder
and one served model, then sends every RPC random messages built from the proto
descriptors (tests/fuzzing.py: random values in every field, nested Values,
huge repeated fields, unknown fields, random and corrupted bytes), round after
round, with a new seed each round. Prints the status codes per method, the
daemon's memory (RSS) over time and every fault: an UNKNOWN or INTERNAL
answer, an ERROR in the daemon's log, or the daemon exiting. Exit status 1 on
any fault.

    python tools/fuzz.py --minutes 30 [--per-method 1000] [--seed 1] [--only Explain]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests import fuzzing  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to keep sending (default 10)")
    parser.add_argument("--per-method", type=int, default=1000, help="messages per RPC in each round")
    parser.add_argument("--seed", type=int, default=1, help="seed of the first round (then seed+1...)")
    parser.add_argument("--only", default="", help="fuzz only methods whose path contains this")
    parser.add_argument("--keep", action="store_true", help="keep the daemon's folder (store, log) afterwards")
    args = parser.parse_args(argv)

    base = tempfile.mkdtemp(prefix="explaind-fuzz-")
    server, pools, tokens = fuzzing.prepare(base)
    print(f"daemon pid {server.proc.pid} on {server.target}; folder {base}", flush=True)
    started = time.monotonic()
    deadline = started + args.minutes * 60
    total = fuzzing.Report()
    seed = args.seed
    try:
        while time.monotonic() < deadline and server.proc.poll() is None:
            report = fuzzing.run(server.target, server.proc.pid, pools, tokens, per_method=args.per_method,
                                 seed=seed, only=args.only, alive=lambda: server.proc.poll() is None)
            total.calls += report.calls
            total.codes.update(report.codes)
            total.faults += report.faults
            total.rss += [(total.calls, rss) for _, rss in report.rss[-1:]]
            removed = forget_fuzzed_models(server.target, tokens["admin"])
            elapsed = time.monotonic() - started
            print(f"round seed={seed}: {report.calls} calls in {report.seconds:.0f}s; total {total.calls} calls, "
                  f"{total.calls / elapsed:.0f}/s, RSS {report.rss[-1][1] / 2**20:.0f} MiB, "
                  f"faults {len(total.faults)}; {removed} models the round uploaded deleted", flush=True)
            seed += 1
    finally:
        alive = server.proc.poll() is None
        log = server.log_tail(10**9)
        server.kill()
    errors = [line for line in log.splitlines() if '"level": "ERROR"' in line]

    print(f"\n{total.calls} calls in {(time.monotonic() - started) / 60:.1f} min; daemon "
          f"{'up to the end' if alive else 'EXITED'}")
    for path, codes in total.by_method().items():
        print(f"  {path}: " + ", ".join(f"{code} {n}" for code, n in sorted(codes.items(), key=lambda c: -c[1])))
    if total.rss:
        first, peak, last = total.rss[0][1], max(r for _, r in total.rss), total.rss[-1][1]
        print(f"RSS after round 1 {first / 2**20:.0f} MiB, peak {peak / 2**20:.0f} MiB, "
              f"at the end {last / 2**20:.0f} MiB")
    for fault in total.faults[:20]:
        print("FAULT", fault[:3])
    for line in errors[:20]:
        print("LOG ERROR", line[:500])
    if not args.keep:
        import shutil
        shutil.rmtree(base, ignore_errors=True)
    return 1 if total.faults or errors or not alive else 0


def forget_fuzzed_models(target: str, admin_token: str) -> int:
    """Deletes the models the round's successful uploads made (all but "base"), so
    the RSS figures measure leaks, not models legitimately loaded."""
    import grpc

    from explaind.client import Client
    removed = 0
    with Client(target, token=admin_token) as client:
        for model in client.list_models():
            if model.name != "models/base":
                try:
                    client.delete_model(model.name)
                    removed += 1
                except grpc.RpcError:
                    pass          # still building: the next round deletes it
    return removed


if __name__ == "__main__":
    sys.exit(main())
