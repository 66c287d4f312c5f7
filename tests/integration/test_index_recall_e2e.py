"""A treeAh model's measured recall reaches the user through a real daemon:
the upload operation's metadata (with a warning naming the setting to raise
when it is below the floor, none when it is not), the Model's IndexInfo, the
`explaind models get` and `explaind upload --wait` commands and the
explaind_index_recall gauge; an update measures it again."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import numpy as np

from explaind.client import upload_metadata
from tests.integration.helpers import model_payload

D, N = 16, 6000


def tree_ah(candidates: int, percent: int = 5) -> dict:
    return {"config": {"dimensions": D, "approximateNeighborsCount": candidates,
                       "distanceMeasureType": "SQUARED_L2_DISTANCE",
                       "algorithmConfig": {"treeAhConfig": {"leafNodeEmbeddingCount": 500,
                                                            "leafNodesToSearchPercent": percent}}}}


def test_recall_in_the_operation_the_model_the_cli_and_the_gauge(start_server, tmp_path):
    server = start_server(store=str(tmp_path / "store"))
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(12, D)) * 0.7                       # overlapping: the codes' order matters
    x = (centers[rng.integers(0, 12, N)] + rng.normal(size=(N, D))).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    data = [str(tmp_path / "x.npy")]
    with server.client() as client:
        starved = client.upload_model(model_payload("", data, tree_ah(10)), "starved")
        client.wait(starved, timeout=300)
        meta = upload_metadata(client.get_operation(starved.name))
        model = client.get_model("starved")
        assert 0 < meta.recall.recall < 0.9 and meta.recall.queries > 0 and meta.recall.floor == 0.9
        assert model.index_info.recall == meta.recall
        assert len(meta.warnings) == 1 and "approximateNeighborsCount 10 ->" in meta.warnings[0]
        assert any(a.setting == "approximateNeighborsCount" and a.recall > meta.recall.recall
                   for a in model.index_info.recall.alternatives)

        good = client.upload_model(model_payload("", data, tree_ah(200, percent=50)), "good")
        client.wait(good, timeout=300)
        meta = upload_metadata(client.get_operation(good.name))
        assert meta.recall.recall >= 0.9 and list(meta.warnings) == []

        presets = client.upload_model(model_payload("", data, presets={"query": "FAST"}), "fast")
        client.wait(presets, timeout=300)
        info = client.get_model("fast").index_info
        assert info.tuning.target == 0.9 and info.tuning.candidates > 0 and info.recall.recall >= 0.9
        assert info.tuning.leaves_searched == info.nprobe and "held-out" in info.tuning.reason

        update = client.update_explanation_dataset("starved", remove_ids=[str(i) for i in range(0, N, 2)])
        client.wait(update, timeout=300)
        updated = upload_metadata(client.get_operation(update.name))
        assert updated.recall.queries > 0 and updated.recall != meta.recall
        assert client.get_model("starved").index_info.recall == updated.recall

        client.explain("starved", [x[0].tolist()], neighbor_count=5, embeddings=True)     # loads it here
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=30).read().decode()
    line = next(s for s in metrics.splitlines() if s.startswith("explaind_index_recall{") and 'model="starved"' in s)
    assert abs(float(line.split()[-1]) - updated.recall.recall) < 1e-9

    cli = _cli("models", "get", "starved", "--target", server.target)
    assert f"recall@10 {updated.recall.recall:.3f} on {updated.recall.queries} held-out examples" in cli.stderr
    assert '"recall"' in cli.stdout

    # `explaind upload --wait` prints the build's warning, naming the setting to raise.
    (tmp_path / "starved.json").write_text(json.dumps(model_payload("", data, tree_ah(10))))
    up = _cli("upload", str(tmp_path / "starved.json"), "--model-id", "starved-cli", "--wait", "--target", server.target)
    warned = [s for s in up.stderr.splitlines() if s.startswith("warning: ")]
    assert len(warned) == 1 and "approximateNeighborsCount 10 ->" in warned[0], up.stderr
    assert json.loads(up.stdout[up.stdout.index("{"):])["indexInfo"]["recall"]["recall"] < 0.9


def _cli(*args: str) -> subprocess.CompletedProcess:
    cli = subprocess.run([sys.executable, "-m", "explaind.server.main", *args], capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert cli.returncode == 0, cli.stderr
    return cli
