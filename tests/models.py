"""Small real TensorFlow models for tests.

Every builder is deterministic (fixed seeds), builds in about a second on a
CPU, writes the artifact under `path` and returns the artifact path (the
SavedModel folder or the .keras file) to pass as `artifact_uri`.

    tabular_embedding_model(path)        Keras functional, input "features" (None, 8) float32;
                                         layers "hidden", "embedding" (latent), "logits" (output);
                                         exported with model.export (signature serving_default)
    sequential_model(path)               Keras Sequential saved with tf.saved_model.save;
                                         layers "dense", "dense_1" (latent candidates), "dense_2"
    signature_embedding_model(path)      tf.Module whose signature returns {"embedding", "probabilities"}
    image_model(path)                    small CNN, input "image" (None, 8, 8, 1) float32;
                                         layers "conv", "conv_1", "pool", "flatten", "embedding", "probs"
    multi_input_model(path)              inputs "a" (None, 3) float32 and "b" (None,) int64; layer "joint"
    text_model(path)                     tf.Module over a string input "text"; outputs "features", "score";
                                         an intermediate tensor named "lengths"
    keras_file_model(path)               the tabular model saved as a .keras file
    nested_model(path)                   functional model calling a nested Sequential "encoder";
                                         BatchNormalization, Activation, Dropout, UnitNormalization
    slow_embedding_model(path)           tf.Module, "features" -> "embedding", about 50 ms per call
    variable_length_model(path)          tf.Module, "x" (None, None) -> "embedding" (3 values), "length"
    counting_model(path)                 tf.Module, "features" (None, 4) -> "embedding", "runs": how many
                                         times this loaded copy has run its signature

Oracles: `keras_layer_latent(model, layer, x)` computes a layer's output
with Keras itself; the builders return the artifact path and keep the Keras
model in `BUILT[path]` so tests can reach it.
"""
from __future__ import annotations

import os
import time
import warnings

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# artifact path -> the Keras model (or tf.Module) it was built from.
BUILT: dict[str, object] = {}


def _keras():
    import keras

    keras.utils.set_random_seed(1234)
    return keras


def _export(model, path: str, how: str) -> str:
    import tensorflow as tf

    if how == "export":
        model.export(path, verbose=False)
    elif how == "saved_model":
        tf.saved_model.save(model, path)
    elif how == "keras":
        path = path if path.endswith(".keras") else path + ".keras"
        with warnings.catch_warnings():
            # Keras' own saving code trips numpy 2's __array__(copy=) deprecation.
            warnings.simplefilter("ignore", DeprecationWarning)
            model.save(path)
    else:
        raise ValueError(how)
    BUILT[path] = model
    return path


def tabular_model(n_features: int = 8, latent_dim: int = 16, n_classes: int = 3):
    """The Keras model behind `tabular_embedding_model` (not saved)."""
    keras = _keras()
    inp = keras.Input((n_features,), name="features")
    h = keras.layers.Dense(32, activation="relu", name="hidden")(inp)
    z = keras.layers.Dense(latent_dim, activation="tanh", name="embedding")(h)
    out = keras.layers.Dense(n_classes, name="logits")(z)
    return keras.Model(inp, out, name="tabular")


def tabular_embedding_model(path: str, n_features: int = 8, latent_dim: int = 16, how: str = "export") -> str:
    """Functional Keras model: "features" -> Dense "hidden" -> Dense "embedding"
    (tanh, the latent) -> Dense "logits" (the only output). `how`: "export"
    (model.export), "saved_model" (tf.saved_model.save) or "keras" (.keras file)."""
    return _export(tabular_model(n_features, latent_dim), path, how)


def keras_file_model(path: str, n_features: int = 8, latent_dim: int = 16) -> str:
    """The tabular model saved as `<path>.keras` (path returned)."""
    return tabular_embedding_model(path, n_features, latent_dim, how="keras")


def sequential_model(path: str, n_features: int = 8, how: str = "saved_model") -> str:
    """Sequential model with layers "dense" (12, relu), "dense_1"
    (6, the usual latent) and "dense_2" (2): names that collide with the
    graph's uniquified scopes, saved with tf.saved_model.save by default."""
    keras = _keras()
    model = keras.Sequential(
        [
            keras.Input((n_features,)),
            # Named as Keras would auto-name them in a fresh session.
            keras.layers.Dense(12, activation="relu", name="dense"),
            keras.layers.Dense(6, activation="relu", name="dense_1"),
            keras.layers.Dense(2, name="dense_2"),
        ]
    )
    return _export(model, path, how)


def image_model(path: str, size: int = 8, channels: int = 1, latent_dim: int = 10, how: str = "export") -> str:
    """Small CNN on a float32 image "image" (None, size, size, channels):
    Conv2D "conv" -> Conv2D "conv_1" -> MaxPooling2D "pool" -> Flatten
    "flatten" -> Dense "embedding" (latent) -> Dense "probs" (softmax)."""
    keras = _keras()
    inp = keras.Input((size, size, channels), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inp)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_1")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    z = keras.layers.Dense(latent_dim, name="embedding")(x)
    out = keras.layers.Dense(3, activation="softmax", name="probs")(z)
    return _export(keras.Model(inp, out, name="cnn"), path, how)


def multi_input_model(path: str, how: str = "export") -> str:
    """Two inputs: "a" (None, 3) float32 and "b" (None,) int64 (a category
    id, embedded); Dense "joint" (5) is the latent; output "out" (None, 1)."""
    keras = _keras()
    a = keras.Input((3,), name="a")
    b = keras.Input((), name="b", dtype="int64")
    eb = keras.layers.Embedding(10, 2, name="cat")(b)
    x = keras.layers.Concatenate(name="concat")([a, eb])
    z = keras.layers.Dense(5, activation="relu", name="joint")(x)
    out = keras.layers.Dense(1, name="out")(z)
    return _export(keras.Model([a, b], out, name="multi"), path, how)


def nested_model(path: str, how: str = "export") -> str:
    """A functional model "outer" (input "features" (None, 8)) that calls a
    nested Sequential "encoder" (Dense "dense_a", BatchNormalization "bn",
    Activation "act", Dropout "drop"), then Dense "proj", UnitNormalization
    "norm" and Dense "head"; outputs [head, proj]. Oracle for the encoder's
    own layers: keras_layer_latent(BUILT[path].get_layer("encoder"), layer, x)."""
    keras = _keras()
    encoder = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(6, name="dense_a"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.Activation("relu", name="act"),
            keras.layers.Dropout(0.5, name="drop"),
        ],
        name="encoder",
    )
    inp = keras.Input((8,), name="features")
    z = keras.layers.Dense(4, name="proj")(encoder(inp))
    out = keras.layers.Dense(2, name="head")(keras.layers.UnitNormalization(name="norm")(z))
    return _export(keras.Model(inp, [out, z], name="outer"), path, how)


def signature_embedding_model(path: str, n_features: int = 4, latent_dim: int = 6, n_classes: int = 3) -> str:
    """A tf.Module SavedModel whose serving_default signature takes "x"
    (None, n_features) float32 and returns {"embedding": x @ W (None,
    latent_dim), "probabilities": softmax(embedding @ V)}. W and V are
    fixed (seeded numpy); `signature_oracle(path, x)` recomputes both."""
    import tensorflow as tf

    rng = np.random.default_rng(7)
    w = rng.normal(size=(n_features, latent_dim)).astype(np.float32)
    v = rng.normal(size=(latent_dim, n_classes)).astype(np.float32)

    class Module(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(w, name="w")
            self.v = tf.Variable(v, name="v")

        @tf.function(input_signature=[tf.TensorSpec([None, n_features], tf.float32, name="x")])
        def serve(self, x):
            z = tf.matmul(x, self.w)
            return {"embedding": z, "probabilities": tf.nn.softmax(tf.matmul(z, self.v))}

    module = Module()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    BUILT[path] = (w, v)
    return path


def slow_embedding_model(path: str, n_features: int = 8, latent_dim: int = 16, seconds_per_batch: float = 0.05) -> str:
    """A tf.Module SavedModel, input "features" (None, n_features), output
    "embedding" = tanh(features @ W), that spends about `seconds_per_batch` of
    CPU time per call whatever the batch size (a loop of matrix products whose
    result is multiplied by zero). Tests that must catch a build mid-stage use
    it, so that the build's length does not depend on how fast the machine is."""
    import tensorflow as tf

    w = np.random.default_rng(3).normal(size=(n_features, latent_dim)).astype(np.float32)
    block = tf.constant(np.eye(256, dtype=np.float32))

    @tf.function
    def one_product():
        return tf.reduce_sum(tf.matmul(block, block))

    one_product()
    start = time.perf_counter()
    for _ in range(50):
        one_product()
    loops = max(1, int(seconds_per_batch / ((time.perf_counter() - start) / 50)))

    class Module(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(w, name="w")
            self.loops = tf.constant(loops)

        @tf.function(input_signature=[tf.TensorSpec([None, n_features], tf.float32, name="features")])
        def serve(self, features):
            def body(i, acc):
                return i + 1, acc + tf.reduce_sum(tf.matmul(block + acc * 0.0, block))
            _, busy = tf.while_loop(lambda i, _: i < self.loops, body, (tf.constant(0), tf.constant(0.0)))
            return {"embedding": tf.tanh(tf.matmul(features, self.w)) + 0.0 * busy}

    module = Module()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    BUILT[path] = w
    return path


def variable_length_model(path: str) -> str:
    """A tf.Module SavedModel whose input "x" is (None, None) float32: each
    instance may have its own length. Outputs "embedding" = [mean(x), max(x),
    min(x)] and "length" (float). `variable_length_oracle(x)` recomputes them."""
    import tensorflow as tf

    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="x")])
        def serve(self, x):
            embedding = tf.stack([tf.reduce_mean(x, 1), tf.reduce_max(x, 1), tf.reduce_min(x, 1)], axis=1)
            return {"embedding": embedding, "length": tf.cast(tf.fill([tf.shape(x)[0]], tf.shape(x)[1]), tf.float32)}

    module = Module()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    BUILT[path] = module
    return path


def counting_model(path: str, n_features: int = 4, latent_dim: int = 3) -> str:
    """A tf.Module SavedModel that counts its own runs: input "features" (None, n_features),
    outputs "embedding" = features @ W and "runs" (one per row, float32): a variable the
    signature adds 1 to before answering, so each row reports the number of runs of its
    loaded copy so far, its own run included. `counting_oracle(path, x)` is the embedding."""
    import tensorflow as tf

    w = np.random.default_rng(5).normal(size=(n_features, latent_dim)).astype(np.float32)

    class Module(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(w, name="w")
            self.runs = tf.Variable(0.0, name="runs")

        @tf.function(input_signature=[tf.TensorSpec([None, n_features], tf.float32, name="features")])
        def serve(self, features):
            runs = self.runs.assign_add(1.0)
            return {"embedding": tf.matmul(features, self.w), "runs": tf.fill([tf.shape(features)[0]], runs)}

    module = Module()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    BUILT[path] = w
    return path


def counting_oracle(path: str, x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) @ BUILT[path]


def variable_length_oracle(x: np.ndarray) -> np.ndarray:
    return np.stack([x.mean(1), x.max(1), x.min(1)], axis=1)


def text_model(path: str) -> str:
    """A tf.Module over a string input "text" (None,): its signature returns
    {"features": [byte length, hash bucket / 100] (None, 2) float32,
    "score": (None,)}; the intermediate tensor is named "lengths" (a
    tensor-name latent source). `text_oracle(x)` recomputes "features"."""
    import tensorflow as tf

    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def serve(self, text):
            lengths = tf.identity(tf.cast(tf.strings.length(text), tf.float32), name="lengths")
            buckets = tf.cast(tf.strings.to_hash_bucket_fast(text, 100), tf.float32) / 100.0
            features = tf.stack([lengths, buckets], axis=1)
            return {"features": features, "score": tf.reduce_sum(features, axis=1)}

    module = Module()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    BUILT[path] = module
    return path


def text_oracle(texts: list[bytes]) -> np.ndarray:
    """What text_model's "features" output is for `texts`."""
    import tensorflow as tf

    t = tf.constant(texts)
    lengths = tf.cast(tf.strings.length(t), tf.float32)
    buckets = tf.cast(tf.strings.to_hash_bucket_fast(t, 100), tf.float32) / 100.0
    return tf.stack([lengths, buckets], axis=1).numpy()


def signature_oracle(path: str, x: np.ndarray) -> dict[str, np.ndarray]:
    """What `signature_embedding_model(path)` computes, in numpy."""
    w, v = BUILT[path]
    z = x.astype(np.float32) @ w
    logits = z @ v
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return {"embedding": z, "probabilities": e / e.sum(axis=1, keepdims=True)}


def keras_layer_latent(model_or_path, layer: str, x) -> np.ndarray:
    """The oracle: `layer`'s output as Keras computes it, flattened to (B, -1).
    `model_or_path`: a Keras model, or an artifact path built by this module."""
    import keras

    model = BUILT[model_or_path] if isinstance(model_or_path, str) else model_or_path
    sub = keras.Model(model.inputs, model.get_layer(layer).output)
    out = np.asarray(sub(list(x) if isinstance(x, (list, tuple)) else [x], training=False))
    return out.reshape(len(out), -1)


def random_inputs(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Deterministic float32 inputs of shape (n, *shape)."""
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)
