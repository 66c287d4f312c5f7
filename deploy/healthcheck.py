#!/usr/bin/env python3
"""Exit 0 only when explaind's gRPC health service answers SERVING.

The image's Docker HEALTHCHECK runs this (Kubernetes probes the same service
natively and ignores HEALTHCHECK). Any other answer -- NOT_SERVING while
draining, UNKNOWN, an unknown service, no server, a timeout -- exits 1, the
only failure code Docker defines.

    python healthcheck.py [--address HOST:PORT] [--service NAME] [--timeout SECONDS]

The address defaults to 127.0.0.1:$EXPLAIND_HEALTH_PORT when the daemon has
a plaintext health port (the gRPC port then speaks TLS), else
127.0.0.1:$EXPLAIND_PORT (8500).
"""
from __future__ import annotations

import argparse
import os
import sys


def default_port(environ) -> str:
    health = environ.get("EXPLAIND_HEALTH_PORT", "")
    if health.strip().lstrip("-").isdigit() and int(health) > 0:
        return health.strip()
    return environ.get("EXPLAIND_PORT", "8500")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default=None,
                        help="host:port of the gRPC server (default 127.0.0.1:$EXPLAIND_HEALTH_PORT "
                             "if set, else $EXPLAIND_PORT)")
    parser.add_argument("--service", default="",
                        help='service to check; "" (default) is the server as a whole')
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer")
    args = parser.parse_args(argv)
    address = args.address or f"127.0.0.1:{default_port(os.environ)}"
    try:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc
    except ImportError as e:  # a broken image is unhealthy, not a crash with code 2
        print(f"unhealthy: {e}", file=sys.stderr)
        return 1
    try:
        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout)
    except grpc.RpcError as e:
        print(f"unhealthy: {address}: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        print(f"unhealthy: {address} service {args.service!r} is {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
