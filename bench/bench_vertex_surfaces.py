"""What the Vertex AI surfaces cost over explaind.v1, through one daemon.

The same Explain (batch 1, EMBEDDINGS format, k=10, an exact index of
--n x --d embeddings) asked four ways, one call at a time: explaind.v1's stub
(the baseline), Vertex's generated client (google-cloud-aiplatform
PredictionServiceClient over a plain channel), the same Vertex method through
a raw gRPC stub (explaind's Vertex messages, so the client library's own cost
is left out), the REST port (aiohttp client, one kept-alive connection), and
the raw Vertex stub through an endpoint created and deployed to with
EndpointService (routing by the traffic split: goal <= 1.05x the raw stub
naming the model's default endpoint). Prints p50/p99 per surface, the ratio
of each p50 to explaind.v1's and the deployed endpoint's to the raw stub's.

    python bench/bench_vertex_surfaces.py [--n 100000] [--d 128] [--calls 1000]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import time

import grpc
import numpy as np
from google.protobuf import json_format, struct_pb2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon import Daemon, explain_requests, percentiles  # noqa: E402

from explaind.v1 import prediction_service_pb2_grpc  # noqa: E402
from explaind.vertex.v1 import endpoint_service_pb2 as endpoints_v1  # noqa: E402
from explaind.vertex.v1 import prediction_service_pb2 as vertex_v1  # noqa: E402

ENDPOINT = "projects/bench/locations/local/endpoints/bench"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _timed(call, requests, warmup: int, calls: int) -> list[float]:
    out = []
    for i in range(warmup + calls):
        start = time.perf_counter()
        call(requests[i % len(requests)])
        if i >= warmup:
            out.append(time.perf_counter() - start)
    return out


def _deployed_endpoint(channel) -> str:
    """An endpoint created and deployed to through Vertex's EndpointService (the model "bench")."""
    from google.longrunning import operations_pb2

    def call(method, request):
        return channel.unary_unary(f"/google.cloud.aiplatform.v1.EndpointService/{method}",
                                   request_serializer=type(request).SerializeToString,
                                   response_deserializer=operations_pb2.Operation.FromString)(request, timeout=60)
    parent = ENDPOINT.rpartition("/endpoints/")[0]
    created = call("CreateEndpoint", endpoints_v1.CreateEndpointRequest(parent=parent, endpoint_id="deployed"))
    assert created.done and not created.HasField("error"), created
    name = f"{parent}/endpoints/deployed"
    deployed = call("DeployModel", endpoints_v1.DeployModelRequest(
        endpoint=name, deployed_model=endpoints_v1.DeployedModel(model=f"{parent}/models/bench")))
    assert deployed.done and not deployed.HasField("error"), deployed
    return name


def _vertex_requests(queries, endpoint: str = ENDPOINT) -> list[vertex_v1.ExplainRequest]:
    out = []
    for q in queries:
        r = vertex_v1.ExplainRequest(endpoint=endpoint)
        r.instances.append(json_format.ParseDict(q.tolist(), struct_pb2.Value()))
        r.explanation_spec_override.examples_override.data_format = 2      # EMBEDDINGS
        out.append(r)
    return out


async def _rest(port: int, queries, warmup: int, calls: int) -> list[float]:
    import aiohttp

    url = f"http://127.0.0.1:{port}/v1/{ENDPOINT}:explain"
    bodies = [{"instances": [q.tolist()], "explanationSpecOverride": {"examplesOverride": {"dataFormat": "EMBEDDINGS"}}}
              for q in queries]
    out = []
    async with aiohttp.ClientSession() as http:
        for i in range(warmup + calls):
            start = time.perf_counter()
            async with http.post(url, json=bodies[i % len(bodies)]) as response:
                answer = await response.json()
            if i >= warmup:
                out.append(time.perf_counter() - start)
    assert len(answer["explanations"][0]["neighbors"]) == 10, answer
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    data = rng.normal(size=(args.n, args.d)).astype(np.float32)
    queries = rng.normal(size=(min(args.calls, 500), args.d)).astype(np.float32)

    http_port = _free_port()
    daemon = Daemon("--max-queue-delay-ms", "0", "--http-port", str(http_port))
    try:
        daemon.upload_embeddings(data, "bench")
        channel = grpc.insecure_channel(daemon.target)
        results = {}
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        results["explaind.v1 stub"] = _timed(lambda r: stub.Explain(r, timeout=30), explain_requests(queries, "bench"),
                                             args.warmup, args.calls)
        raw = channel.unary_unary("/google.cloud.aiplatform.v1.PredictionService/Explain",
                                  request_serializer=vertex_v1.ExplainRequest.SerializeToString,
                                  response_deserializer=vertex_v1.ExplainResponse.FromString)
        results["Vertex method, raw stub"] = _timed(lambda r: raw(r, timeout=30), _vertex_requests(queries),
                                                    args.warmup, args.calls)
        from google.cloud import aiplatform_v1
        transport = aiplatform_v1.services.prediction_service.transports.grpc.PredictionServiceGrpcTransport(
            channel=grpc.insecure_channel(daemon.target))
        vertex = aiplatform_v1.PredictionServiceClient(transport=transport)
        wrapped = [aiplatform_v1.ExplainRequest.wrap(r) for r in _vertex_requests(queries)]
        results["aiplatform_v1 client"] = _timed(lambda r: vertex.explain(request=r, timeout=30), wrapped,
                                                 args.warmup, args.calls)
        results["REST :explain"] = asyncio.run(_rest(http_port, queries, args.warmup, args.calls))
        deployed = _deployed_endpoint(channel)
        # Interleaved rounds, so drift on a shared machine reaches both alike.
        for _ in range(3):
            results.setdefault("raw stub, model endpoint", []).extend(
                _timed(lambda r: raw(r, timeout=30), _vertex_requests(queries), args.warmup, args.calls // 3))
            results.setdefault("raw stub, deployed endpoint", []).extend(
                _timed(lambda r: raw(r, timeout=30), _vertex_requests(queries, deployed), args.warmup, args.calls // 3))
    finally:
        daemon.stop()

    base = percentiles(results["explaind.v1 stub"])["p50"]
    print(f"Explain, batch 1, k=10, exact index {args.n} x {args.d}, {args.calls} sequential calls per surface")
    print(f"{'surface':<28} {'p50 ms':>8} {'p99 ms':>8} {'p50 / explaind.v1':>18}")
    for name, samples in results.items():
        p = percentiles(samples)
        print(f"{name:<28} {p['p50']:8.2f} {p['p99']:8.2f} {p['p50'] / base:18.2f}")
    ratio = percentiles(results["raw stub, deployed endpoint"])["p50"] / \
        percentiles(results["raw stub, model endpoint"])["p50"]
    print(f"Explain through a deployed endpoint / naming the model (p50): {ratio:.3f} (goal <= 1.05)")


if __name__ == "__main__":
    main()
