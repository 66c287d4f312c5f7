"""Small TensorFlow models for attribution and metadata tests, built once per test process.

Each builder returns the folder of a SavedModel (cached: the digits CNN trains
for a few seconds and several test modules use it).
"""
from __future__ import annotations

import functools
import os
import tempfile

import numpy as np

LINEAR_WEIGHTS = np.array([[1.5, -0.5], [-2.0, 0.25], [0.5, 3.0], [4.0, -1.0]], dtype=np.float32)
LINEAR_BIAS = np.array([0.3, -0.2], dtype=np.float32)

_ROOT = tempfile.mkdtemp(prefix="explaind-attr-models-")


def _tf():
    import tensorflow as tf

    return tf


@functools.lru_cache(maxsize=None)
def linear_model() -> str:
    """y = x @ W + b with x of 4 features and y of 2 outputs; signature input 'x', output 'y'."""
    tf = _tf()
    module = tf.Module()
    module.w = tf.Variable(LINEAR_WEIGHTS)
    module.b = tf.Variable(LINEAR_BIAS)

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def serve(x):
        return {"y": tf.matmul(x, module.w) + module.b}

    path = os.path.join(_ROOT, "linear")
    tf.saved_model.save(module, path, signatures={"serving_default": serve})
    return path


@functools.lru_cache(maxsize=None)
def step_model() -> str:
    """A non-differentiable model: y = sum(round(x) * w); gradients are zero everywhere."""
    tf = _tf()
    module = tf.Module()
    module.w = tf.Variable(np.array([1.0, 2.0, 3.0], np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
    def serve(x):
        return {"y": tf.reduce_sum(tf.round(x) * module.w, axis=1, keepdims=True)}

    path = os.path.join(_ROOT, "step")
    tf.saved_model.save(module, path, signatures={"serving_default": serve})
    return path


def keras():
    import keras as keras_module

    return keras_module


@functools.lru_cache(maxsize=None)
def mlp_model() -> str:
    """A random (untrained) tanh MLP, 6 features -> 3 outputs; input 'features', output 'output_0'."""
    k = keras()
    k.utils.set_random_seed(1)
    inputs = k.Input((6,), name="features")
    hidden = k.layers.Dense(16, activation="tanh")(inputs)
    hidden = k.layers.Dense(16, activation="tanh")(hidden)
    model = k.Model(inputs, k.layers.Dense(3)(hidden))
    path = os.path.join(_ROOT, "mlp")
    model.export(path, verbose=False)
    return path


@functools.lru_cache(maxsize=None)
def digits_data() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits as (N, 8, 8, 1) floats in [0, 1] and labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]
    return images, digits.target.astype(np.int64)


@functools.lru_cache(maxsize=None)
def digits_cnn() -> str:
    """A small CNN trained for a few epochs on the digits; input 'image', output 'output_0' (softmax)."""
    k = keras()
    k.utils.set_random_seed(0)
    images, labels = digits_data()
    inputs = k.Input((8, 8, 1), name="image")
    hidden = k.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    hidden = k.layers.Conv2D(16, 3, padding="same", activation="relu")(hidden)
    hidden = k.layers.Flatten()(hidden)
    outputs = k.layers.Dense(10, activation="softmax")(hidden)
    model = k.Model(inputs, outputs)
    model.compile(optimizer=k.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(images[:1500], labels[:1500], epochs=4, batch_size=64, verbose=0)
    path = os.path.join(_ROOT, "digits")
    model.export(path, verbose=False)
    return path
