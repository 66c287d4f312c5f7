"""`explaind quickstart`: a first run that works without a model of your own.

It trains a small real Keras model on a flowers data set it makes (three
species, four measurements), exports it as a SavedModel, writes the training
set as JSONL, starts a daemon on free loopback ports (or uses --target),
uploads the model with a Vertex AI style payload, waits for the index, then
explains and predicts one flower, printing each answer. Everything lands in
one folder (--dir, else a new temporary one) that is kept for you to look at.

Needs the server extra (TensorFlow): pip install "explaind[server]".
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

SPECIES = ("setosa", "versicolor", "virginica")
# Mean and spread of sepal length, sepal width, petal length, petal width (cm) per species.
MEANS = ((5.0, 3.4, 1.5, 0.25), (5.9, 2.8, 4.3, 1.3), (6.6, 3.0, 5.6, 2.0))
SPREADS = ((0.35, 0.38, 0.17, 0.1), (0.5, 0.3, 0.47, 0.2), (0.63, 0.32, 0.55, 0.27))
PER_SPECIES = 150
QUERY = {"id": "my-flower", "features": [6.1, 2.9, 4.7, 1.4]}
READY = re.compile(r"explaind listening on port (\d+)")


def make_flowers(seed: int = 7):
    """(features float32 (450, 4), species index per row): reproducible."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(MEANS[s], SPREADS[s], size=(PER_SPECIES, 4)) for s in range(3)])
    y = np.repeat(np.arange(3), PER_SPECIES)
    return x.astype(np.float32), y


def train_model(x, y, path: str) -> str:
    """A Keras classifier whose 8-wide "embedding" layer is the latent space, exported as a SavedModel."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    keras.utils.set_random_seed(7)
    inputs = keras.Input((4,), name="features")
    hidden = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    embedding = keras.layers.Dense(8, activation="tanh", name="embedding")(hidden)
    species = keras.layers.Dense(3, activation="softmax", name="species")(embedding)
    model = keras.Model(inputs, species)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, y, epochs=40, batch_size=32, verbose=0)
    model.export(path, verbose=False)
    return f"{history.history['accuracy'][-1]:.2f}"


def write_examples(x, y, path: pathlib.Path) -> None:
    with open(path, "w") as f:
        for i, (row, s) in enumerate(zip(x, y)):
            name = SPECIES[s]
            f.write(json.dumps({"id": f"{name}-{i % PER_SPECIES}", "features": [round(float(v), 2) for v in row],
                                "restricts": [{"namespace": "species", "allow": [name]}],
                                "crowding_tag": name}) + "\n")


def upload_payload(model_dir: str, data: str) -> dict:
    """A whole Vertex AI UploadModel body, as its docs write one."""
    return {"model": {
        "displayName": "flowers",
        "artifactUri": model_dir,
        "explanationSpec": {
            "parameters": {"examples": {
                "gcsSource": {"uris": [data]},
                "neighborCount": 5,
                "presets": {"modality": "tabular", "query": "precise"}}},
            "metadata": {"latentSpaceSource": "embedding"}}},
        "modelId": "flowers"}


class _Daemon:
    """`explaind serve` on free loopback ports with its store in the work folder."""

    def __init__(self, workdir: pathlib.Path):
        self.log = open(workdir / "daemon.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "explaind.server.main", "serve", "--host", "127.0.0.1", "--port", "0",
             "--metrics-port", "0", "--http-port", "0", "--store", str(workdir / "store"),
             "--cache-dir", str(workdir / "cache"), "--log-level", "WARNING"],
            stdout=subprocess.PIPE, stderr=self.log, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        end = time.monotonic() + 180
        while time.monotonic() < end:
            line = self.proc.stdout.readline()
            match = READY.search(line)
            if match:
                self.target = f"127.0.0.1:{match.group(1)}"
                return
            if not line and self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"the daemon did not start; see {self.log.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def run(target: str = "", workdir: str = "", out=print) -> int:
    from explaind.client import Client

    try:
        import keras  # noqa: F401 - the quickstart trains a Keras model
    except ImportError:
        out('error: the quickstart trains a Keras model: pip install "explaind[server]"')
        return 1
    folder = pathlib.Path(workdir or tempfile.mkdtemp(prefix="explaind-quickstart-"))
    folder.mkdir(parents=True, exist_ok=True)
    x, y = make_flowers()
    accuracy = train_model(x, y, str(folder / "model"))
    write_examples(x, y, folder / "flowers.jsonl")
    out(f"1. trained a Keras model on {len(x)} flowers (accuracy {accuracy}); SavedModel in {folder / 'model'}")
    daemon = None if target else _Daemon(folder)
    try:
        with Client(target or daemon.target) as client:
            out(f"2. daemon at {target or daemon.target}" + ("" if target else f" (log: {folder / 'daemon.log'})"))
            payload = upload_payload(str(folder / "model"), str(folder / "flowers.jsonl"))
            (folder / "model.json").write_text(json.dumps(payload, indent=2))
            operation = client.upload_model(payload)
            model = client.wait(operation, timeout=300)
            info = model.index_info
            out(f"3. uploaded {folder / 'model.json'} (a Vertex AI payload): {model.name} is "
                f"{model.State.Name(model.state)}, {info.example_count} examples indexed ({info.index_type}, "
                f"{info.dimensions} dimensions)")
            request = {"instances": [QUERY],
                       "explanation_spec_override": {"examples_override": {"neighbor_count": 5}}}
            (folder / "request.json").write_text(json.dumps(request, indent=2))
            nearest = client.explain("flowers", request).explanations[0]
            out(f"4. the flowers nearest to {QUERY['id']} {QUERY['features']} in the model's latent space:")
            for neighbor in nearest.neighbors:
                out(f"     {neighbor.neighbor_id:<16} distance {neighbor.neighbor_distance:.4f}")
            only = client.explain("flowers", request, crowding_count=2,
                                  restrictions=[{"namespace": "species", "allow": ["virginica", "setosa"]}])
            out("5. the same, only virginica or setosa, at most 2 per species (crowding):")
            for neighbor in only.explanations[0].neighbors:
                out(f"     {neighbor.neighbor_id:<16} distance {neighbor.neighbor_distance:.4f}")
            probabilities = client.predict("flowers", [QUERY["features"]])[0]
            best = max(range(3), key=lambda i: probabilities[i])
            out(f"6. the model predicts {SPECIES[best]} (" +
                ", ".join(f"{s} {p:.2f}" for s, p in zip(SPECIES, probabilities)) + ")")
            out(f"Now with your own daemon (explaind serve): explaind upload {folder / 'model.json'} --wait, "
                f"then explaind explain flowers {folder / 'request.json'}")
    finally:
        if daemon is not None:
            daemon.stop()
    return 0
