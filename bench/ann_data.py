"""Data sets of several shapes for the index benchmarks (bench_ann.py,
bench_disk_reads.py): N x d float32 examples and held-out queries drawn the
same way, each from a fixed seed.

  mixture     1000 Gaussian clusters in all d dimensions (one leaf usually
              holds a query's neighbors)
  lowdim      points near a 16-dimensional subspace: Gaussian in the subspace,
              small isotropic noise off it (neighbors spread over many leaves)
  relu        non-negative, half-zero features: a ReLU layer over a clustered
              64-dimensional input (what a CNN's penultimate layer looks like)
  model       a real model's latent space: an MLP trained here (TensorFlow) to
              classify sklearn's 8x8 digits, shifted, rescaled and noised into
              N + queries images; the examples are its last hidden layer (d
              values, ReLU)
"""
from __future__ import annotations

import numpy as np

SHAPES = ("mixture", "lowdim", "relu", "model")


def make(shape: str, n: int, nq: int, d: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(examples (n, d), queries (nq, d)), float32."""
    points = {"mixture": mixture, "lowdim": low_dimensional, "relu": relu_features,
              "model": model_latent}[shape](n + nq, d, seed)
    points = np.ascontiguousarray(points, dtype=np.float32)
    return points[:n], points[n:]


def mixture(n: int, d: int, seed: int, clusters: int = 1000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, d)).astype(np.float32) * 2
    return centers[rng.integers(0, clusters, n)] + rng.standard_normal((n, d)).astype(np.float32)


def low_dimensional(n: int, d: int, seed: int, intrinsic: int = 16, noise: float = 0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((d, intrinsic)))         # orthonormal columns
    z = rng.standard_normal((n, intrinsic)).astype(np.float32)
    return z @ basis.T.astype(np.float32) + noise * rng.standard_normal((n, d)).astype(np.float32)


def relu_features(n: int, d: int, seed: int, inputs: int = 64, clusters: int = 300) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = mixture(n, inputs, seed + 1, clusters) * 0.75
    weights = rng.standard_normal((inputs, d)).astype(np.float32) / np.sqrt(inputs)
    return np.maximum(z @ weights, 0.0)


def model_latent(n: int, d: int, seed: int, train_rows: int = 60_000, epochs: int = 3) -> np.ndarray:
    """The last hidden layer (d units, ReLU) of an MLP trained on augmented digits."""
    import tensorflow as tf
    from sklearn.datasets import load_digits

    digits = load_digits()
    images, labels = digits.images.astype(np.float32), digits.target
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(images), n)
    out = np.empty((n, 64), np.float32)
    for s in range(0, n, 1 << 16):
        rows = pick[s:s + (1 << 16)]
        batch = images[rows]
        shift = rng.integers(-1, 2, (len(rows), 2))
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                sel = (shift[:, 0] == dy) & (shift[:, 1] == dx)
                batch[sel] = np.roll(batch[sel], (dy, dx), axis=(1, 2))
        batch *= rng.uniform(0.7, 1.3, (len(rows), 1, 1)).astype(np.float32)
        batch += rng.normal(0, 1.5, batch.shape).astype(np.float32)
        out[s:s + len(rows)] = batch.reshape(len(rows), 64) / 16.0
    tf.keras.utils.set_random_seed(seed)
    inputs = tf.keras.Input((64,))
    hidden = tf.keras.layers.Dense(256, activation="relu")(inputs)
    latent = tf.keras.layers.Dense(d, activation="relu", name="latent")(hidden)
    logits = tf.keras.layers.Dense(10)(latent)
    classifier = tf.keras.Model(inputs, logits)
    classifier.compile(optimizer="adam", loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rows = min(train_rows, n)
    classifier.fit(out[:rows], labels[pick[:rows]], batch_size=256, epochs=epochs, verbose=0)
    embed = tf.keras.Model(inputs, latent)
    return embed.predict(out, batch_size=4096, verbose=0)


def add_data_arguments(parser) -> None:
    """The data set and query options the disk-read benches share (bench_disk_reads.py,
    bench_row_order.py): its shape, N x d, and how many queries re-rank how many candidates."""
    parser.add_argument("--shape", default="lowdim", choices=SHAPES)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--candidates", type=int, default=100)
