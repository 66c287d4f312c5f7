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


# ----- encoded inputs, tabular encodings, the image notebook's signatures -----------------

TEXT_VOCABULARY, TEXT_LENGTH, TEXT_DIMENSIONS = 24, 8, 6
POSITIVE_TOKENS, NEGATIVE_TOKENS = (3, 4, 5), (6, 7, 8)


def text_data(count: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Token ids (0 pads) whose label says whether "positive" tokens outnumber "negative" ones."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, TEXT_VOCABULARY, size=(count, TEXT_LENGTH)).astype(np.int32)
    tokens[rng.random((count, TEXT_LENGTH)) < 0.2] = 0
    score = np.isin(tokens, POSITIVE_TOKENS).sum(1) - np.isin(tokens, NEGATIVE_TOKENS).sum(1)
    return tokens, (score > 0).astype(np.int64)


@functools.lru_cache(maxsize=None)
def text_classifier() -> tuple[str, dict]:
    """Integer token ids -> Embedding ("embedding") -> mean pooling -> Dense(2, softmax), trained a
    few epochs. Input 'tokens' (int32, 8), output 'output_0'. Returns (SavedModel folder, weights:
    "embedding" (vocabulary, dims), "kernel" (dims, 2), "bias" (2,))."""
    k = keras()
    k.utils.set_random_seed(2)
    tokens = k.Input((TEXT_LENGTH,), dtype="int32", name="tokens")
    embedded = k.layers.Embedding(TEXT_VOCABULARY, TEXT_DIMENSIONS, name="embedding")(tokens)
    pooled = k.layers.GlobalAveragePooling1D(name="pooling")(embedded)
    dense = k.layers.Dense(2, activation="softmax", name="classifier")
    model = k.Model(tokens, dense(pooled))
    model.compile(optimizer=k.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    x, y = text_data()
    model.fit(x, y, epochs=15, batch_size=64, verbose=0)
    path = os.path.join(_ROOT, "text")
    model.export(path, verbose=False)
    weights = {"embedding": model.get_layer("embedding").get_weights()[0].astype(np.float64),
               "kernel": dense.get_weights()[0].astype(np.float64), "bias": dense.get_weights()[1].astype(np.float64)}
    return path, weights


@functools.lru_cache(maxsize=None)
def recurrent_text_classifier():
    """Integer token ids -> Embedding ("embedding") -> LSTM -> Dense(1, sigmoid), the Vertex text
    notebook's shape (untrained). Returns (SavedModel folder, the Keras model from the embedding's
    output on, for an independent gradient)."""
    k = keras()
    k.utils.set_random_seed(6)
    tokens = k.Input((TEXT_LENGTH,), dtype="int32", name="tokens")
    embedding = k.layers.Embedding(TEXT_VOCABULARY, TEXT_DIMENSIONS, name="embedding")
    recurrent, dense = k.layers.LSTM(8), k.layers.Dense(1, activation="sigmoid")
    model = k.Model(tokens, dense(recurrent(embedding(tokens))))
    path = os.path.join(_ROOT, "recurrent_text")
    model.export(path, verbose=False)
    embedded = k.Input((TEXT_LENGTH, TEXT_DIMENSIONS))
    return path, k.Model(embedded, dense(recurrent(embedded))), embedding.get_weights()[0]


TAB_COLORS = ("red", "green", "blue", "grey")
TAB_TAGS = ("garden", "balcony", "garage", "cellar", "attic")


@functools.lru_cache(maxsize=None)
def tabular_model() -> tuple[str, list]:
    """A tanh MLP over a categorical id (one-hot inside the model, layer "color_onehot"), a multi-hot
    bag of 5 tags and one number: inputs 'color' (int32, 1), 'tags' (float32, 5), 'size' (float32, 1);
    output 'price' (1). Random weights: nonlinear, with interactions. Returns (SavedModel folder,
    [(kernel, bias)] of its three Dense layers over [one-hot, tags, size])."""
    k = keras()
    k.utils.set_random_seed(3)
    color = k.Input((1,), dtype="int32", name="color")
    tags = k.Input((len(TAB_TAGS),), name="tags")
    size = k.Input((1,), name="size")
    onehot = k.layers.CategoryEncoding(num_tokens=len(TAB_COLORS), output_mode="one_hot", name="color_onehot")(color)
    joined = k.layers.Concatenate()([onehot, tags, size])
    layers = [k.layers.Dense(16, activation="tanh"), k.layers.Dense(8, activation="tanh"), k.layers.Dense(1, name="price")]
    hidden = joined
    for layer in layers:
        hidden = layer(hidden)
    model = k.Model({"color": color, "tags": tags, "size": size}, {"price": hidden})
    path = os.path.join(_ROOT, "tabular")
    model.export(path, verbose=False)
    return path, [tuple(w.astype(np.float64) for w in layer.get_weights()) for layer in layers]


@functools.lru_cache(maxsize=None)
def sparse_bag_model() -> tuple[str, tuple]:
    """A bag of 5 tags given sparsely: 'tag_ids' (int32, 3) index the tags, 'tag_weights' (float32, 3)
    weigh them; the model scatters them into a dense bag and scores it: y = tanh(bag @ w) @ v.
    Output 'score' (1). Returns (SavedModel folder, (w, v))."""
    tf = _tf()
    module = tf.Module()
    rng = np.random.default_rng(4)
    module.w = tf.Variable(rng.normal(size=(len(TAB_TAGS), 4)).astype(np.float32))
    module.v = tf.Variable(rng.normal(size=(4, 1)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.int32, name="tag_ids"),
                                  tf.TensorSpec([None, 3], tf.float32, name="tag_weights")])
    def serve(tag_ids, tag_weights):
        bag = tf.reduce_sum(tf.one_hot(tag_ids, len(TAB_TAGS)) * tag_weights[..., None], axis=1)
        return {"score": tf.matmul(tf.tanh(tf.matmul(bag, module.w)), module.v)}

    path = os.path.join(_ROOT, "sparse_bag")
    tf.saved_model.save(module, path, signatures={"serving_default": serve})
    return path, (module.w.numpy().astype(np.float64), module.v.numpy().astype(np.float64))


IMAGE_SIZE = 32


@functools.lru_cache(maxsize=None)
def image_notebook_model() -> str:
    """A small CNN over 32x32x3 images exported as Google's image notebook exports: serving_default
    takes JPEG bytes ('bytes_inputs'), xai_preprocess decodes them into the model's input
    ('numpy_inputs'), xai_model is the model on that input. Output 'output_0' (10 softmax scores)."""
    tf = _tf()
    k = keras()
    k.utils.set_random_seed(5)
    inputs = k.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="numpy_inputs")
    hidden = k.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    hidden = k.layers.MaxPooling2D(4)(hidden)
    hidden = k.layers.Flatten()(hidden)
    model = k.Model(inputs, k.layers.Dense(10, activation="softmax")(hidden))

    def decode(data):
        image = tf.image.convert_image_dtype(tf.io.decode_jpeg(data, channels=3), tf.float32)
        return tf.image.resize(image, (IMAGE_SIZE, IMAGE_SIZE))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def preprocess_fn(bytes_inputs):
        return {"numpy_inputs": tf.map_fn(decode, bytes_inputs, fn_output_signature=tf.float32)}

    m_call = tf.function(model.call).get_concrete_function(
        tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32, name="numpy_inputs"))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serving_fn(bytes_inputs):
        return m_call(**preprocess_fn(bytes_inputs))

    module = tf.Module()
    module.model = model
    path = os.path.join(_ROOT, "image_notebook")
    tf.saved_model.save(module, path, signatures={"serving_default": serving_fn, "xai_preprocess": preprocess_fn,
                                                  "xai_model": m_call})
    return path


def jpeg_images(count: int, seed: int = 0) -> list[bytes]:
    """Smooth random 32x32 colour pictures as JPEG bytes."""
    tf = _tf()
    rng = np.random.default_rng(seed)
    pictures = []
    for _ in range(count):
        coarse = rng.random((4, 4, 3))
        image = np.kron(coarse, np.ones((IMAGE_SIZE // 4, IMAGE_SIZE // 4, 1)))
        pictures.append(tf.io.encode_jpeg((image * 255).astype(np.uint8)).numpy())
    return pictures
