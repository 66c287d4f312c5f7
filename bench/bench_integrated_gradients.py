"""Integrated gradients at 50 steps for one 64x64x3 image on a small CNN:
the batched implementation (one gradient call over all steps) vs a per-step
loop, Explain through the daemon, and 8 images sharing gradient calls (as a
batch of merged Explain calls does) vs one by one.

    .venv/bin/python bench/bench_integrated_gradients.py [--repeats 5] [--steps 50]

Both run in this process on the same SavedModel signature and must agree.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def build_model(path: str) -> None:
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((64, 64, 3), name="image")
    x = keras.layers.Conv2D(16, 3, activation="relu", padding="same")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(32, 3, activation="relu", padding="same")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(32, 3, activation="relu", padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    keras.Model(inputs, outputs).export(path, verbose=False)


def per_step_loop(gradient_fn, instance, baseline, output_index, step_count):
    """The naive reference: one gradient call per interpolation point."""
    from explaind.server.attributions.interpolation import path_points

    alphas, weights = path_points(step_count)
    total = np.zeros(instance["image"].shape)
    for alpha, weight in zip(alphas, weights):
        point = {"image": (baseline["image"] + alpha * (instance["image"] - baseline["image"]))[None].astype(np.float32)}
        total += weight * gradient_fn(point, np.array([output_index]))["image"][0]
    return {"image": (instance["image"] - baseline["image"]) * total}


def timed(function, repeats):
    function()  # warm-up: traces and allocates once
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from explaind.server.attributions.integrated_gradients import integrated_gradients
    from explaind.server.attributions.tf_model import SignatureModel

    path = os.path.join(tempfile.mkdtemp(prefix="explaind-bench-"), "cnn")
    build_model(path)
    model = SignatureModel.load(path, output_name="output_0")
    image = np.random.default_rng(0).random((64, 64, 3)).astype(np.float32)
    instance, baseline = {"image": image}, {"image": np.zeros_like(image)}
    label = int(np.argmax(model.predict({"image": image[None]})[0]))

    batched_s, batched = timed(lambda: integrated_gradients(model.gradients, instance, [baseline], label, args.steps), args.repeats)
    loop_s, looped = timed(lambda: per_step_loop(model.gradients, instance, baseline, label, args.steps), args.repeats)
    np.testing.assert_allclose(batched["image"], looped["image"], rtol=1e-3, atol=1e-6)

    shared_s, separate_s = batch_of_instances(path, args.steps, args.repeats)
    served_s = explain_through_daemon(path, image, args.steps, args.repeats)

    import tensorflow as tf

    print(f"integrated gradients, {args.steps} steps, one 64x64x3 image, small CNN "
          f"(TF {tf.__version__}, {os.cpu_count()} CPUs, median of {args.repeats})")
    print(f"batched (1 gradient call):        {batched_s * 1000:8.1f} ms")
    print(f"per-step loop ({args.steps} gradient calls):  {loop_s * 1000:8.1f} ms")
    print(f"speed-up: {loop_s / batched_s:.1f}x")
    print(f"Explain through the daemon:       {served_s * 1000:8.1f} ms "
          f"({served_s / batched_s:.2f}x the in-process batched computation)")
    print(f"8 images, one explain() sharing gradient calls: {shared_s * 1000:8.1f} ms; "
          f"one by one: {separate_s * 1000:8.1f} ms ({separate_s / shared_s:.2f}x)")


def batch_of_instances(path: str, steps: int, repeats: int, count: int = 8) -> tuple[float, float]:
    """FeatureExplainer over `count` images in one call (what a batch of merged
    Explain calls runs) vs the same images one call each."""
    from google.protobuf import json_format

    from explaind.server.attributions import FeatureExplainer
    from explaind.v1 import explanation_pb2

    spec = explanation_pb2.ExplanationSpec()
    json_format.ParseDict({"parameters": {"integratedGradientsAttribution": {"stepCount": steps}},
                           "metadata": {"inputs": {"image": {"inputTensorName": "image"}},
                                        "outputs": {"probs": {"outputTensorName": "output_0"}}}}, spec)
    explainer = FeatureExplainer.load(path, spec)
    images = np.random.default_rng(1).random((count, 64, 64, 3)).astype(np.float32)
    shared_s, shared = timed(lambda: explainer.explain({"image": images}), repeats)
    separate_s, separate = timed(lambda: [explainer.explain({"image": images[i:i + 1]})[0] for i in range(count)],
                                 repeats)
    for a, b in zip(shared, separate):
        np.testing.assert_allclose(json_format.MessageToDict(a[0].feature_attributions)["image"],
                                   json_format.MessageToDict(b[0].feature_attributions)["image"],
                                   rtol=1e-3, atol=1e-6)
    return shared_s, separate_s


def explain_through_daemon(path: str, image: np.ndarray, steps: int, repeats: int) -> float:
    """Median latency of one Explain call (IG, `steps` steps) through a real daemon process."""
    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from daemon import Daemon

    from explaind.client import Client

    daemon = Daemon()
    try:
        daemon.upload({"displayName": "cnn", "artifactUri": path, "explanationSpec": {
            "parameters": {"integratedGradientsAttribution": {"stepCount": steps}},
            "metadata": {"inputs": {"image": {"inputTensorName": "image", "modality": "image"}},
                         "outputs": {"probs": {"outputTensorName": "output_0"}}}}}, "cnn")
        with Client(daemon.target) as client:
            instance = [{"image": image.tolist()}]
            client.explain("cnn", instance, timeout=120)       # warm-up: first call traces the gradient
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                response = client.explain("cnn", instance, timeout=120)
                times.append(time.perf_counter() - start)
            assert response.explanations[0].attributions
    finally:
        daemon.stop()
    return float(np.median(times))


if __name__ == "__main__":
    main()
