"""gRPC's own CPU per call in Python, with nothing of explaind's: the floor
under the daemon's CPU per call (bench/load_generator.py).

A server answering every call with canned bytes (the size of a 10-neighbor
Explain answer) runs in a child process, once on grpc.aio (what the daemon
serves on) and once on grpc's thread-pool server; clients in this process make
concurrent unary calls over loopback (64 callers on 4 channels, as
load_generator's). The server's CPU per call is its process's user + system
time over the timed calls, read from /proc, so the clients' CPU does not count.

    python bench/bench_grpc_floor.py [--calls 20000] [--callers 64] [--channels 4] [--rounds 2]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from concurrent import futures

import grpc
from grpc import aio

SERVICE, METHOD = "floor.Floor", "Call"
REQUEST = b"q" * 600       # an EMBEDDINGS instance of 128 floats, about
ANSWER = b"a" * 300        # 10 neighbors: ids and distances


def _handlers(behaviour) -> tuple:
    handler = grpc.unary_unary_rpc_method_handler(behaviour)
    return (grpc.method_handlers_generic_handler(SERVICE, {METHOD: handler}),), {METHOD: handler}


def serve_aio() -> None:
    async def answer(_request, _context):
        return ANSWER

    async def run():
        server = aio.server()
        generic, methods = _handlers(answer)
        server.add_generic_rpc_handlers(generic)
        server.add_registered_method_handlers(SERVICE, methods)
        print(server.add_insecure_port("127.0.0.1:0"), flush=True)
        await server.start()
        await server.wait_for_termination()
    asyncio.run(run())


def serve_threads() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    generic, methods = _handlers(lambda _request, _context: ANSWER)
    server.add_generic_rpc_handlers(generic)
    print(server.add_insecure_port("127.0.0.1:0"), flush=True)
    server.start()
    server.wait_for_termination()


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def call_load(port: int, calls: int, callers: int, channels: int) -> float:
    """Makes `calls` calls from `callers` concurrent callers; the seconds they took."""
    opened = [aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(channels)]
    stubs = [channel.unary_unary(f"/{SERVICE}/{METHOD}") for channel in opened]
    left = calls

    async def caller(i: int):
        nonlocal left
        stub = stubs[i % channels]
        while left > 0:
            left -= 1
            await stub(REQUEST)

    start = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(callers)))
    seconds = time.perf_counter() - start
    for channel in opened:
        await channel.close()
    return seconds


def measure(kind: str, args) -> tuple[float, float]:
    """(calls a second, server CPU ms a call) for one server kind."""
    server = subprocess.Popen([sys.executable, __file__, "--serve", kind], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        asyncio.run(call_load(port, 500, args.callers, args.channels))     # warm-up
        before = cpu_seconds(server.pid)
        seconds = asyncio.run(call_load(port, args.calls, args.callers, args.channels))
        return args.calls / seconds, 1000 * (cpu_seconds(server.pid) - before) / args.calls
    finally:
        server.kill()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--serve", choices=("aio", "threads"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        (serve_aio if args.serve == "aio" else serve_threads)()
        return
    print(f"canned answers, {args.calls} calls, {args.callers} callers on {args.channels} channels, "
          f"{os.cpu_count()} cores")
    print(f"{'server':<22}{'calls/s':>10}{'server CPU ms/call':>20}")
    per_call = {"aio": [], "threads": []}
    for _ in range(args.rounds):        # interleaved, so load from elsewhere falls on both
        for kind in per_call:
            rate, cpu = measure(kind, args)
            per_call[kind].append(cpu)
            print(f"{'grpc.aio' if kind == 'aio' else 'grpc thread pool':<22}{rate:>10.0f}{cpu:>20.3f}")
    best = {kind: min(values) for kind, values in per_call.items()}
    print(f"grpc.aio / thread pool, server CPU per call (best of {args.rounds}): "
          f"{best['aio'] / best['threads']:.2f}x ({best['aio']:.3f} vs {best['threads']:.3f} ms)")


if __name__ == "__main__":
    main()
