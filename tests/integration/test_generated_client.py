"""A user's own service talks to the daemon through stubs it generates from proto/."""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap

import numpy as np

from tests.integration.helpers import brute_force, search_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

USER_CODE = textwrap.dedent("""
    import json, sys
    import grpc
    from google.longrunning import operations_pb2, operations_pb2_grpc
    from google.protobuf import duration_pb2, json_format, struct_pb2
    from explaind.v1 import model_service_pb2, model_service_pb2_grpc, prediction_service_pb2, \\
        prediction_service_pb2_grpc
    import explaind.v1.model_service_pb2 as m
    assert m.__file__.startswith(sys.argv[2]), m.__file__   # our freshly generated stubs, not the package's
    channel = grpc.insecure_channel(sys.argv[1])
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    ops = operations_pb2_grpc.OperationsStub(channel)
    predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = json_format.Parse(sys.stdin.read(), model_service_pb2.UploadModelRequest())
    op = models.UploadModel(request, timeout=30)
    for _ in range(120):
        op = ops.WaitOperation(operations_pb2.WaitOperationRequest(
            name=op.name, timeout=duration_pb2.Duration(seconds=1)), timeout=10)
        if op.done:
            break
    assert op.done and not op.HasField("error"), op
    explain = prediction_service_pb2.ExplainRequest(name="models/" + request.model_id)
    explain.instances.add().list_value.values.extend(
        [struct_pb2.Value(number_value=v) for v in json.loads(sys.argv[3])])
    explain.explanation_spec_override.examples_override.data_format = 2   # EMBEDDINGS
    response = predictions.Explain(explain, timeout=30)
    print(json.dumps([n.neighbor_id for n in response.explanations[0].neighbors]))
""")


def test_client_generated_with_grpc_tools_protoc(start_server, tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import gen_protos
    out = tmp_path / "gen"
    gen_protos.generate(out)

    rng = np.random.default_rng(0)
    data = rng.normal(size=(60, 8)).astype(np.float32)
    np.save(tmp_path / "e.npy", data)
    server = start_server()
    import json
    request = {"modelId": "generated", "model": {"displayName": "g", "explanationSpec": {"parameters": {
        "examples": {"gcsSource": {"uris": [str(tmp_path / "e.npy")]}, "neighborCount": 4,
                     "nearestNeighborSearchConfig": search_config(8, "SQUARED_L2_DISTANCE")}}}}}
    query = rng.normal(size=8).astype(np.float32)
    # -S: no site initialisation, so the editable explaind install is invisible and only
    # the stubs generated above (plus grpcio/protobuf from site-packages) are importable.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(out), sysconfig.get_paths()["purelib"],
                                                       sysconfig.get_paths()["platlib"]]))
    result = subprocess.run([sys.executable, "-S", "-c", USER_CODE, server.target, str(out),
                             json.dumps(query.tolist())], input=json.dumps(request), env=env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    ids, _ = brute_force(data, query[None], 4, "SQUARED_L2_DISTANCE")
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [str(j) for j in ids[0]]
