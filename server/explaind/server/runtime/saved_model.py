"""Load a model and extract its latent space.

Two artifact kinds:
- a SavedModel folder: the signature (default "serving_default") is the
  model; the latent space is one of its output keys, or a layer / tensor
  inside its graph, reached by freezing the signature (which inlines nested
  calls, so layer ops keep their scope names) and pruning a function from the
  signature inputs to that tensor (see graph_latent.py for the layer rule);
- a ".keras" file: loaded with Keras, the latent a sub-model to the layer.

TensorFlow is imported inside functions so the server starts fast when no
model needs it.
"""
from __future__ import annotations

import logging
import os
import weakref
from typing import Any, Callable

import numpy as np

from explaind.server.errors import InvalidArgument
from explaind.server.runtime import artifacts
from explaind.server.runtime.frozen_graph import FrozenSignature
from explaind.server.runtime.instances import InputSpec

log = logging.getLogger(__name__)

ARTIFACT_FIELD = "model.artifact_uri"
LATENT_FIELD = "model.explanation_spec.metadata.latent_space_source"
KERAS_SUFFIXES = (".keras",)
# Rows per TensorFlow call: bounds the memory of one call when a caller hands
# over a large batch.
MAX_ROWS_PER_CALL = 1024


class LatentModel:
    """A loaded model: its signature inputs and outputs, and its latent space."""

    input_specs: dict[str, InputSpec]
    input_names: list[str]
    output_names: list[str]
    latent_dim: int
    latent_space_source: str  # what the latent resolved from ("" becomes the only output's name)
    latent_tensor: str | None = None  # the graph tensor a layer/tensor source resolved to

    def __init__(
        self,
        input_specs: dict[str, InputSpec],
        output_names: list[str],
        embed_fn: Callable[[dict[str, np.ndarray]], np.ndarray],
        predict_fn: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
        latent_dim: int | None,
        latent_space_source: str,
    ):
        self.input_specs = input_specs
        self.input_names = list(input_specs)
        self.output_names = output_names
        self._embed_fn = embed_fn
        self._predict_fn = predict_fn
        self.latent_space_source = latent_space_source
        self.latent_dim = latent_dim if latent_dim else self._probe_latent_dim()

    @classmethod
    def load(
        cls, artifact_uri: str, latent_space_source: str = "", signature_name: str = "serving_default"
    ) -> "LatentModel":
        artifact = artifacts.fetch(artifact_uri, ARTIFACT_FIELD)
        try:
            if artifact.path.endswith(KERAS_SUFFIXES) and os.path.isfile(artifact.path):
                model = _load_keras(artifact.path, artifact_uri, latent_space_source)
            else:
                model = _load_saved_model(artifact.path, artifact_uri, latent_space_source, signature_name or "serving_default")
        except BaseException:
            artifact.cleanup()
            raise
        # Assets may be read after loading; the local copy lives as long as the model.
        weakref.finalize(model, artifact.cleanup)
        return model

    def embed(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """float32 (B, latent_dim); a latent tensor of rank > 2 is flattened."""
        n = _batch_size(inputs)
        if n == 0:
            return np.zeros((0, self.latent_dim), np.float32)
        parts = []
        for start in range(0, n, MAX_ROWS_PER_CALL):
            rows = _rows(inputs, start, start + MAX_ROWS_PER_CALL)
            parts.append(np.asarray(self._embed_fn(rows)).reshape(_batch_size(rows), -1))
        out = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return np.ascontiguousarray(out, dtype=np.float32)

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The signature's own outputs, keyed by output name."""
        n = _batch_size(inputs)
        parts = [self._predict_fn(_rows(inputs, s, s + MAX_ROWS_PER_CALL)) for s in range(0, max(n, 1), MAX_ROWS_PER_CALL)]
        if len(parts) == 1:
            return parts[0]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _probe_latent_dim(self) -> int:
        # The static shape did not say: run one dummy row.
        dummy = {}
        for name, spec in self.input_specs.items():
            if any(d is None for d in spec.shape[1:]):
                raise InvalidArgument(
                    f"the size of latent {self.latent_space_source!r} is not static and input {name!r} "
                    "has no fixed shape to probe it with",
                    field=LATENT_FIELD,
                )
            shape = (1,) + tuple(spec.shape[1:])
            dummy[name] = np.full(shape, b"", dtype=object) if spec.dtype == "string" else np.zeros(shape, spec.dtype)
        try:
            return int(np.asarray(self._embed_fn(dummy)).reshape(1, -1).shape[1])
        except Exception as e:  # the model itself rejects the dummy row
            raise InvalidArgument(
                f"cannot determine the size of latent {self.latent_space_source!r}: {e}", field=LATENT_FIELD
            ) from None


def _batch_size(inputs: dict[str, np.ndarray]) -> int:
    sizes = {len(v) for v in inputs.values()}
    if len(sizes) > 1:
        raise InvalidArgument(f"inputs have different batch sizes {sorted(sizes)}", field="instances")
    return sizes.pop() if sizes else 0


def _rows(inputs: dict[str, np.ndarray], start: int, stop: int) -> dict[str, np.ndarray]:
    return {k: v[start:stop] for k, v in inputs.items()}


def _static_dim(shape) -> int | None:
    dims = list(shape)[1:]
    if any(d is None for d in dims):
        return None
    return int(np.prod(dims, dtype=np.int64)) if dims else 1


# ---------------------------------------------------------------- SavedModel


def _load_saved_model(path: str, uri: str, source: str, signature_name: str) -> LatentModel:
    import tensorflow as tf

    if not (os.path.isfile(os.path.join(path, "saved_model.pb")) or os.path.isfile(os.path.join(path, "saved_model.pbtxt"))):
        raise InvalidArgument(f"{uri} is not a SavedModel folder (no saved_model.pb) nor a .keras file", field=ARTIFACT_FIELD)
    try:
        loaded = tf.saved_model.load(path)
    except Exception as e:  # corrupt or incompatible protobufs, missing variables
        raise InvalidArgument(f"cannot load the SavedModel at {uri}: {e}", field=ARTIFACT_FIELD) from None
    signatures = dict(getattr(loaded, "signatures", {}) or {})
    if signature_name not in signatures:
        raise InvalidArgument(
            f"the SavedModel has no signature {signature_name!r}; it has {sorted(signatures) or 'none'}",
            field=ARTIFACT_FIELD,
        )
    fn = signatures[signature_name]
    arg_specs = fn.structured_input_signature[1]
    input_specs = {name: _input_spec(name, spec) for name, spec in sorted(arg_specs.items())}
    outputs = fn.structured_outputs
    output_names = sorted(outputs)

    def call(inputs: dict[str, np.ndarray]) -> dict[str, Any]:
        return fn(**{k: tf.constant(inputs[k], dtype=arg_specs[k].dtype) for k in input_specs})

    def predict(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in call(inputs).items()}

    if not source:
        if len(output_names) != 1:
            raise InvalidArgument(
                f"latent_space_source is empty and the signature has several outputs {output_names}; name one "
                "of them, a layer or a tensor",
                field=LATENT_FIELD,
            )
        source = output_names[0]
    if source in outputs:
        key = source

        def embed(inputs: dict[str, np.ndarray]) -> np.ndarray:
            return call(inputs)[key].numpy()

        model = LatentModel(input_specs, output_names, embed, predict, _static_dim(outputs[key].shape), source)
        model._keepalive = loaded  # noqa: SLF001  the signature's variables live in `loaded`
        return model

    pruned, dim, tensor = _graph_latent(fn, source, output_names)

    def embed_graph(inputs: dict[str, np.ndarray]) -> np.ndarray:
        args = [tf.constant(inputs[k], dtype=arg_specs[k].dtype) for k in input_specs]
        return pruned(*args).numpy()

    model = LatentModel(input_specs, output_names, embed_graph, predict, dim, source)
    model.latent_tensor = tensor
    model._keepalive = loaded  # noqa: SLF001  the signature's variables live in `loaded`
    return model


def _input_spec(name: str, spec) -> InputSpec:
    shape = tuple(spec.shape.as_list()) if spec.shape.rank is not None else (None,)
    dtype = "string" if spec.dtype.name == "string" else np.dtype(spec.dtype.as_numpy_dtype).name
    return InputSpec(name=name, shape=shape, dtype=dtype)


def _graph_latent(fn, source: str, output_names: list[str]):
    """Find `source` (a tensor or layer name) in the frozen signature and cut a
    function from the signature inputs to it.
    -> (function, static latent size or None, tensor name)."""
    graph = FrozenSignature(fn)
    found = graph.resolve(source)
    if found.tensor is None:
        if found.ambiguous:
            raise InvalidArgument(
                f"latent_space_source {source!r} matches several tensors: {found.ambiguous[:10]}; give the full name",
                field=LATENT_FIELD,
            )
        raise InvalidArgument(
            f"latent_space_source {source!r} is neither an output of the signature ({output_names}), "
            f"a layer (those with weights: {graph.layer_names()}; others are found by "
            "their ops, and a layer that computes nothing at inference such as Dropout has none: name "
            "the layer before it) nor a tensor of the graph",
            field=LATENT_FIELD,
        )
    try:
        target = graph.element(found.tensor)
        pruned = graph.function(list(graph.input_tensors.values()), found.tensor)
    except (ValueError, KeyError, TypeError) as e:
        raise InvalidArgument(f"cannot compute {source!r} ({found.tensor}) from the signature inputs: {e}",
                              field=LATENT_FIELD) from None
    log.info("latent_space_source %r resolved to tensor %s", source, found.tensor)
    return pruned, _static_dim(target.shape) if target.shape.rank is not None else None, found.tensor


# ---------------------------------------------------------------- .keras


def _load_keras(path: str, uri: str, source: str) -> LatentModel:
    import keras

    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as e:  # corrupt archive, unknown custom objects
        raise InvalidArgument(f"cannot load the Keras model at {uri}: {e}", field=ARTIFACT_FIELD) from None
    inputs = list(model.inputs)
    input_specs = {}
    for t in inputs:
        name = t.name
        dtype = "string" if str(t.dtype) == "string" else np.dtype(str(t.dtype)).name
        input_specs[name] = InputSpec(name=name, shape=tuple(t.shape), dtype=dtype)
    order = [t.name for t in inputs]
    output_names = list(getattr(model, "output_names", None) or [f"output_{i}" for i in range(len(model.outputs))])

    def args(batch: dict[str, np.ndarray]):
        # A list in model.inputs order: the structure both wrappers below expect.
        return [batch[n] for n in order]

    full = keras.Model(model.inputs, model.outputs)

    def predict(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = full(args(batch), training=False)
        if isinstance(out, dict):
            return {k: np.asarray(v) for k, v in out.items()}
        outs = out if isinstance(out, (list, tuple)) else [out]
        return {n: np.asarray(v) for n, v in zip(output_names, outs)}

    layer_names = [layer.name for layer in model.layers]
    if not source:
        if len(model.outputs) != 1:
            raise InvalidArgument(
                f"latent_space_source is empty and the model has several outputs {output_names}; name one",
                field=LATENT_FIELD,
            )
        latent = model.outputs[0]
        source = output_names[0]
    elif source in layer_names:
        latent = model.get_layer(source).output
    elif source in output_names:
        latent = model.outputs[output_names.index(source)]
    else:
        raise InvalidArgument(
            f"latent_space_source {source!r} is not a layer of the model; layers: {layer_names}",
            field=LATENT_FIELD,
        )
    sub = keras.Model(model.inputs, latent)

    def embed(batch: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(sub(args(batch), training=False))

    return LatentModel(input_specs, output_names, embed, predict, _static_dim(latent.shape), source)
