"""A SavedModel seen as the plain callables attribution maths needs.

A request travels: request inputs (the serving signature's) -> `preprocess`
(Vertex's `xai_preprocess` signature when the model exports it beside
`xai_model`, else nothing) -> model inputs (the `xai_model` signature's, else
the serving signature's) -> the model signature -> the explained output.

Attributions are taken with respect to "space" tensors: model inputs, or
tensors inside the model graph (an embedding named by `encodedTensorName`, an
internal tensor named by `inputTensorName`). Graph tensors are reached through
the frozen model signature (runtime/frozen_graph.py): fed to replace what the
graph computed, or fetched from the model inputs. Every callable takes one
dict mixing model input keys and graph tensor names.

TensorFlow is imported lazily so the rest of the package (and its tests)
runs without it.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidArgument
from .metadata import signature_name_of

XAI_MODEL = "xai_model"
XAI_PREPROCESS = "xai_preprocess"
ARTIFACT_FIELD = "model.artifact_uri"


@dataclass(frozen=True)
class TensorInfo:
    shape: tuple  # per instance (no batch axis); None for unknown sizes
    dtype: np.dtype
    is_floating: bool

    @property
    def is_numeric(self) -> bool:
        return np.issubdtype(self.dtype, np.number) or np.issubdtype(self.dtype, np.bool_)


class SignatureModel:
    """The signatures of one loaded SavedModel, explaining one output of the model signature
    (flattened per instance)."""

    def __init__(self, serving, model_signature=None, preprocess=None, output_name: str = ""):
        import tensorflow as tf

        self._tf = tf
        self._serving = serving
        self._model = model_signature or serving
        self._preprocess = preprocess
        self.output_name = output_name
        self.inputs = _infos(serving)              # what a request carries
        self.model_inputs = _infos(self._model)    # what the explained signature takes
        self.outputs = {name: tuple(spec.shape.as_list()[1:]) for name, spec in self._model.structured_outputs.items()}
        if preprocess is not None:
            produced = set(preprocess.structured_outputs)
            if not set(self.model_inputs) <= produced:
                raise InvalidArgument(f"the {XAI_PREPROCESS} signature returns {sorted(produced)}, the {XAI_MODEL} "
                                      f"signature takes {sorted(self.model_inputs)}", field=ARTIFACT_FIELD)
        self._frozen = None
        self._bound: tuple[str, ...] = ()          # graph tensors fed in place of what the graph computes
        self._functions: dict = {}
        self._lock = threading.RLock()       # functions are built once, by whichever thread asks first

    @classmethod
    def load(cls, artifact_uri: str, signature_name: str = "serving_default", output_name: str = ""):
        import tensorflow as tf

        loaded = tf.saved_model.load(artifact_uri)
        signatures = loaded.signatures
        serving = signatures[signature_name]
        if XAI_MODEL in signatures and XAI_PREPROCESS in signatures:
            model = cls(serving, signatures[XAI_MODEL], signatures[XAI_PREPROCESS], output_name)
        else:
            model = cls(serving, output_name=output_name)
        model._loaded = loaded  # keeps variables alive as long as the signatures
        return model

    @property
    def preprocesses(self) -> bool:
        """True when requests go through an xai_preprocess signature first."""
        return self._preprocess is not None

    # ----- names ---------------------------------------------------------------------

    def resolve(self, name: str) -> str:
        """A model input key (also TF1-style "key:0") or a tensor inside the model graph (a
        tensor, op, scope or layer name) -> its canonical name. LookupError says why not."""
        key = signature_name_of(name, self.model_inputs)
        if key is not None:
            return key
        graph = self._graph()
        found = graph.resolve(name)
        if found.tensor is None:
            if found.ambiguous:
                raise LookupError(f"{name!r} matches several graph tensors: {found.ambiguous[:10]}; give the full name")
            raise LookupError(f"{name!r} is neither an input of the {self._model_signature_name()} signature "
                              f"{sorted(self.model_inputs)} nor a tensor or layer of its graph (layers with "
                              f"weights: {graph.layer_names()[:20]})")
        return found.tensor

    def tensor_info(self, name: str) -> TensorInfo:
        """Shape and dtype of a canonical name."""
        if name in self.model_inputs:
            return self.model_inputs[name]
        element = self._graph().element(name)
        shape = tuple(element.shape.as_list()[1:]) if element.shape.rank else ()
        return TensorInfo(shape, np.dtype(element.dtype.as_numpy_dtype), element.dtype.is_floating)

    def is_graph_tensor(self, name: str) -> bool:
        return name not in self.model_inputs

    def bind(self, fed: list[str], fetched: list[str]) -> None:
        """Prepares the functions explanations need: `fed` graph tensors replace what the graph
        computes in predict and gradients; `fetched` graph tensors are computed by values()."""
        self._bound = tuple(dict.fromkeys(fed))
        if self._bound:
            self._function(self._bound, (self._output_tensor(),))
        if fetched:
            self._function((), tuple(dict.fromkeys(fetched)))

    # ----- calls ---------------------------------------------------------------------

    def preprocess(self, inputs) -> dict[str, np.ndarray]:
        """Request inputs -> model inputs."""
        if self._preprocess is None:
            return dict(inputs)
        out = self._preprocess(**self._signature_tensors(self._preprocess, inputs))
        return {name: out[name].numpy() for name in self.model_inputs}

    def values(self, inputs, names, replaced=None) -> dict[str, np.ndarray]:
        """The named tensors computed from model inputs (and `replaced` graph tensors fed instead
        of what the graph computes); model input keys are passed through."""
        replaced = replaced or {}
        inputs = dict(inputs) | {name: value for name, value in replaced.items() if name in self.model_inputs}
        fed = {name: value for name, value in replaced.items() if name not in self.model_inputs}
        out = {name: np.asarray(inputs[name]) for name in names if name in self.model_inputs}
        graph_names = tuple(name for name in names if name not in self.model_inputs)
        if graph_names:
            results = self._call(self._function(tuple(fed), graph_names), inputs, fed)
            out.update({name: value.numpy() for name, value in zip(graph_names, results)})
        return out

    def predict(self, inputs) -> np.ndarray:
        """(batch, n_outputs) float64 values of the explained output; bound graph tensors in
        `inputs` replace what the graph computes."""
        return self._selected(self._forward(inputs)).numpy().astype(np.float64)

    def predict_all(self, inputs) -> dict[str, np.ndarray]:
        """The serving signature's outputs for request inputs (what Predict answers)."""
        return {name: value.numpy() for name, value in self._serving(**self._signature_tensors(self._serving, inputs)).items()}

    def gradients(self, inputs, output_index: np.ndarray) -> dict[str, np.ndarray]:
        """d output[row, output_index[row]] / d x for each floating model input and bound graph
        tensor in `inputs`; zeros where not differentiable."""
        tf = self._tf
        fed = self._fed(inputs)
        model = self._signature_tensors(self._model, inputs)
        watched = {name: t for name, t in (model | fed).items()
                   if t.dtype.is_floating and (name in fed or name in inputs)}
        with tf.GradientTape() as tape:
            tape.watch(list(watched.values()))
            flat = self._selected(self._forward(inputs, model, fed))
            # Rows are independent, so the gradient of the sum is every row's own gradient.
            chosen = tf.gather(flat, tf.convert_to_tensor(output_index, tf.int64), axis=1, batch_dims=1)
        grads = tape.gradient(chosen, watched, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return {name: grads[name].numpy() for name in watched}

    # ----- internals -----------------------------------------------------------------

    def _forward(self, inputs, model=None, fed=None):
        model = model if model is not None else self._signature_tensors(self._model, inputs)
        fed = fed if fed is not None else self._fed(inputs)
        if not fed:
            return self._model(**model)[self.output_name]
        function = self._function(self._bound, (self._output_tensor(),))
        return function(*self._ordered(model), *(fed[name] for name in self._bound))[0]

    def _fed(self, inputs) -> dict:
        present = [name for name in self._bound if name in inputs]
        if present and len(present) != len(self._bound):
            raise ValueError(f"feed every bound tensor or none: got {present} of {list(self._bound)}")
        graph = self._graph() if present else None
        return {name: self._tf.convert_to_tensor(np.asarray(inputs[name]), dtype=graph.element(name).dtype)
                for name in present}

    def _call(self, function, inputs, replaced):
        graph = self._graph()
        model = self._signature_tensors(self._model, inputs)
        fed = [self._tf.convert_to_tensor(np.asarray(value), dtype=graph.element(name).dtype)
               for name, value in replaced.items()]
        return function(*self._ordered(model), *fed)

    def _ordered(self, model_tensors) -> list:
        # The frozen graph's placeholders are in sorted input-name order.
        return [model_tensors[name] for name in sorted(model_tensors)]

    def _function(self, fed: tuple, fetches: tuple):
        key = (fed, fetches)
        with self._lock:
            if key not in self._functions:
                graph = self._graph()
                feeds = [graph.input_tensors[name] for name in sorted(self.model_inputs)] + list(fed)
                self._functions[key] = graph.function(feeds, list(fetches))
            return self._functions[key]

    def _graph(self):
        with self._lock:
            if self._frozen is None:
                from ..runtime.frozen_graph import FrozenSignature
                # Functional loops: gradients flow through a recurrent layer's While op.
                self._frozen = FrozenSignature(self._model, lower_control_flow=False)
            return self._frozen

    def _output_tensor(self) -> str:
        return self._graph().output_tensors[self.output_name]

    def _model_signature_name(self) -> str:
        return XAI_MODEL if self._preprocess is not None else "serving"

    def _signature_tensors(self, signature, inputs) -> dict:
        specs = signature.structured_input_signature[1]
        return {name: self._tf.convert_to_tensor(np.asarray(inputs[name]), dtype=spec.dtype)
                for name, spec in specs.items()}

    def _selected(self, tensor):
        return self._tf.reshape(tensor, (self._tf.shape(tensor)[0], -1))


def _infos(signature) -> dict[str, TensorInfo]:
    _, specs = signature.structured_input_signature
    return {name: TensorInfo(tuple(spec.shape.as_list()[1:]) if spec.shape.rank is not None else (None,),
                             np.dtype(spec.dtype.as_numpy_dtype), spec.dtype.is_floating)
            for name, spec in specs.items()}
