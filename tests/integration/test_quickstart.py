"""`explaind quickstart`, as a newcomer on a fresh clone runs it: a real Keras
model and data set, a daemon it starts, a Vertex-style upload, answers printed."""
from __future__ import annotations

import json
import re
import subprocess
import sys


def test_quickstart_trains_uploads_explains_and_predicts(tmp_path):
    run = subprocess.run([sys.executable, "-m", "explaind.server.main", "quickstart", "--dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert re.search(r"trained a Keras model on 450 flowers \(accuracy 0\.9\d\)", out), out
    assert "models/flowers is READY, 450 examples indexed" in out
    # The query flower is a versicolor: its nearest examples in the latent space are too.
    nearest = re.findall(r"^\s+(\w+)-\d+\s+distance ([\d.]+)$", _step(out, 4), re.M)
    assert len(nearest) == 5 and all(species == "versicolor" for species, _ in nearest), out
    distances = [float(d) for _, d in nearest]
    assert distances == sorted(distances)
    # Allow-list and crowding: only virginica or setosa, at most 2 of each.
    restricted = re.findall(r"^\s+(\w+)-\d+\s+distance", _step(out, 5), re.M)
    assert sorted(restricted) == ["setosa", "setosa", "virginica", "virginica"], out
    assert "the model predicts versicolor" in out
    # What it uploaded is a Vertex AI body with lowercase preset enums, left for the user.
    payload = json.loads((tmp_path / "model.json").read_text())
    assert payload["model"]["explanationSpec"]["parameters"]["examples"]["presets"] == \
        {"modality": "tabular", "query": "precise"}


def _step(out: str, n: int) -> str:
    """The lines the quickstart printed under its step `n` ("n. ...")."""
    return out.split(f"\n{n}. ")[1].split(f"\n{n + 1}. ")[0]
