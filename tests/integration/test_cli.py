"""The `explaind` command as a user runs it: upload --wait, explain, operations, models."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from tests.integration.helpers import brute_force, search_config


def _cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "explaind.server.main", *args], input=stdin,
                          capture_output=True, text=True, timeout=300)


def test_cli_upload_wait_explain_and_listings(start_server, tmp_path):
    server = start_server()
    rng = np.random.default_rng(4)
    data = rng.normal(size=(80, 6)).astype(np.float32)
    with open(tmp_path / "d.jsonl", "w") as f:
        for i, row in enumerate(data):
            f.write(json.dumps({"id": f"row{i}", "embedding": row.tolist()}) + "\n")
    # A whole Vertex-style request body (its "model" object) parses unchanged.
    body = {"model": {"displayName": "cli", "explanationSpec": {"parameters": {"examples": {
        "gcsSource": {"uris": [str(tmp_path / "*.jsonl")]}, "neighborCount": 3,
        "nearestNeighborSearchConfig": search_config(6, "COSINE_DISTANCE")}}}}}
    (tmp_path / "model.json").write_text(json.dumps(body))
    up = _cli("upload", str(tmp_path / "model.json"), "--model-id", "cli", "--wait", "--target", server.target)
    assert up.returncode == 0, up.stderr
    assert up.stdout.startswith("operations/")
    assert "100.0%" in up.stderr and "80/80" in up.stderr          # the progress bar
    model = json.loads(up.stdout[up.stdout.index("{"):])
    assert model["state"] == "READY" and model["indexInfo"]["exampleCount"] == "80"

    query = rng.normal(size=6).astype(np.float32)
    (tmp_path / "q.json").write_text(json.dumps([query.tolist()]))
    out = _cli("explain", "cli", str(tmp_path / "q.json"), "--embeddings", "--target", server.target)
    assert out.returncode == 0, out.stderr
    got = [n["neighborId"] for n in json.loads(out.stdout)["explanations"][0]["neighbors"]]
    ids, _ = brute_force(data, query[None], 3, "COSINE_DISTANCE")
    assert got == [f"row{j}" for j in ids[0]]

    listed = _cli("models", "list", "--target", server.target)
    assert listed.returncode == 0 and listed.stdout.split("\t")[:2] == ["models/cli", "READY"]
    ops = _cli("operations", "list", "--target", server.target)
    assert ops.returncode == 0 and "models/cli\tDONE" in ops.stdout
    missing = _cli("models", "get", "nope", "--target", server.target)
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr

    # update: the nearest example removed, a new one added right on the query
    with open(tmp_path / "new.data", "w") as f:
        f.write(json.dumps({"id": "added", "embedding": query.tolist()}) + "\n")
    up = _cli("update", "cli", "--add", str(tmp_path / "new.data"), "--jsonl", "--remove", f"row{ids[0][0]}",
              "--wait", "--target", server.target)
    assert up.returncode == 0, up.stderr
    result = json.loads(up.stdout[up.stdout.index("{"):])
    assert (result["examplesAdded"], result["examplesRemoved"]) == ("1", "1")
    out = _cli("explain", "cli", str(tmp_path / "q.json"), "--embeddings", "--target", server.target)
    got = [n["neighborId"] for n in json.loads(out.stdout)["explanations"][0]["neighbors"]]
    assert got == ["added"] + [f"row{j}" for j in ids[0][1:]]
    nothing = _cli("update", "cli", "--target", server.target)
    assert nothing.returncode == 1 and "INVALID_ARGUMENT" in nothing.stderr


def test_cli_metadata_writes_the_sdk_format(tmp_path):
    import shutil

    from tests import attr_models
    model = tmp_path / "linear"
    shutil.copytree(attr_models.linear_model(), model)
    out = _cli("metadata", str(model))
    assert out.returncode == 0, out.stderr
    written = json.loads((model / "explanation_metadata.json").read_text())
    assert written["inputs"]["x"]["input_tensor_name"] == "x"
    assert written["outputs"]["y"]["output_tensor_name"] == "y"
    assert written["tags"] == ["explainable_ai_sdk"] and "framework" in written
