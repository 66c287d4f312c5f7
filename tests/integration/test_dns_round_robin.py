"""Client-side round robin over a `dns:///` name with two A records (what a
headless Service gives a gRPC client), served by a DNS server on loopback,
reaching two replicas that share one store."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request

import grpc
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from explaind.client import Client
from tests.dns_server import DnsServer
from tests.integration.helpers import model_payload, search_config

CLIENT = textwrap.dedent("""
    import sys
    from explaind.client import Client
    import grpc
    channel = grpc.insecure_channel(sys.argv[1], options=[("grpc.lb_policy_name", "round_robin")])
    client = Client(channel=channel)
    for _ in range(40):
        response = client.explain("rr", [[0.5] * 4], embeddings=True, timeout=20)
        assert len(response.explanations[0].neighbors) == 3
    print("ok")
""")


def _handled(metrics_port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "grpc_server_handled_total" and s.labels.get("grpc_method") == "Explain")


def test_dns_round_robin_spreads_calls_over_replicas(start_server, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = str(tmp_path / "store")
    a = start_server(store=store, host="127.0.0.1", port=port, store_poll_seconds=0.3)
    b = start_server(store=store, host="127.0.0.2", port=port, store_poll_seconds=0.3)
    np.save(tmp_path / "e.npy", np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32))
    with a.client() as client:
        client.wait(client.upload_model(model_payload("", [str(tmp_path / "e.npy")],
                                                      search_config(4, "SQUARED_L2_DISTANCE"), neighbor_count=3),
                                        model_id="rr"), timeout=60)
    with Client(f"127.0.0.2:{port}") as on_b:      # b serves it too, from the shared store
        deadline = time.monotonic() + 10
        while True:
            try:
                on_b.explain("rr", [[0.5] * 4], embeddings=True)
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
    before = [_handled(r.metrics_port) for r in (a, b)]
    with DnsServer({"explaind.test": ["127.0.0.1", "127.0.0.2"]}) as dns:
        target = f"dns://127.0.0.1:{dns.port}/explaind.test:{port}"
        env = dict(os.environ, GRPC_DNS_RESOLVER="ares")
        result = subprocess.run([sys.executable, "-c", CLIENT, target], env=env, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stderr
        assert ("explaind.test", 1) in dns.queries         # the name really was resolved through DNS
    spread = [_handled(r.metrics_port) - before[i] for i, r in enumerate((a, b))]
    assert sum(spread) == 40 and min(spread) >= 10, spread
