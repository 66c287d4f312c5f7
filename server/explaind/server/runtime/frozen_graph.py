"""A signature frozen into one graph: find a tensor inside it by name or layer,
and cut functions between any of its tensors.

Freezing inlines nested function calls, so a Keras layer's ops keep their
scope names (graph_latent.py holds the layer -> tensor rule). Both the latent
space of example-based models and the encoded tensors of attribution models
(an embedding, the input of a preprocessing-free sub-graph) are such tensors.

TensorFlow is imported inside the functions, as everywhere in runtime/.
"""
from __future__ import annotations

from dataclasses import dataclass

from explaind.server.runtime import graph_latent


@dataclass(frozen=True)
class Resolution:
    tensor: str | None        # "node:index", when the name resolved to exactly one tensor
    ambiguous: list[str]      # candidates when the name matched several


class FrozenSignature:
    """One concrete signature function, frozen (variables become constants).

    `lower_control_flow`: loops and conditionals become TF1 control-flow ops, whose
    inner ops are graph nodes a latent space can name; kept as functional While and
    If ops (False) instead, gradients flow through them (a recurrent layer's loop)."""

    def __init__(self, fn, lower_control_flow: bool = True):
        import tensorflow as tf
        from tensorflow.python.framework.convert_to_constants import (
            convert_variables_to_constants_v2_as_graph,
        )

        self._tf = tf
        self.signature = fn
        self.frozen, self.graph_def = convert_variables_to_constants_v2_as_graph(
            fn, lower_control_flow=lower_control_flow)
        self.index = graph_latent.GraphIndex.build(self.graph_def)
        # Frozen capture constants keep the names of the capture placeholders.
        handle_names = {id(v.handle): v.name for v in fn.variables}
        capture_layers = {}
        for external, internal in fn.graph.captures:
            var_name = handle_names.get(id(external))
            if var_name and "/" in var_name:
                capture_layers[internal.op.name] = var_name.split(":")[0].rsplit("/", 2)[-2]
        self.var_scopes = graph_latent.variable_scopes(self.index, capture_layers)
        self.input_tensors = dict(zip(sorted(fn.structured_input_signature[1]), _feed_names(fn, self.frozen)))
        # The frozen function's outputs are the signature's, flattened (dict keys in sorted order).
        self.output_tensors = dict(zip(sorted(fn.structured_outputs), (t.name for t in self.frozen.outputs)))

        graph_def = self.graph_def

        def import_graph():
            tf.compat.v1.import_graph_def(graph_def, name="")

        self._wrapped = tf.compat.v1.wrap_function(import_graph, [])

    def resolve(self, source: str) -> Resolution:
        """A layer (with variables first), a tensor or op name, a name scope path, a layer
        without variables: the first rule that finds exactly one tensor wins."""
        tensor, ambiguous = None, []
        if source in self.var_scopes:
            tensor = graph_latent.scope_output(self.index, self.var_scopes[source][0])
        if tensor is None:
            tensor, ambiguous = graph_latent.find_tensor(self.index, source)
        if tensor is None and ":" not in source:
            if "/" in source:
                scope = graph_latent.find_scope(self.index, source)
            else:
                scope = graph_latent.layer_scope(self.index, source, self.var_scopes)
            if scope is not None:
                tensor = graph_latent.scope_output(self.index, scope)
                ambiguous = [] if tensor else ambiguous
        return Resolution(tensor, ambiguous)

    def layer_names(self) -> list[str]:
        """Layers found by their variables (for error messages)."""
        return graph_latent.layer_names(self.var_scopes)

    def element(self, tensor: str):
        """The graph tensor of a resolved name (its dtype and static shape)."""
        return self._wrapped.graph.as_graph_element(tensor)

    def function(self, feeds: list[str], fetches):
        """A function of the `feeds` tensors (positional, in order) computing `fetches`
        (a tensor name or a list of them); the graph upstream of the feeds is cut away.
        Raises ValueError, KeyError or TypeError when the fetches need an unfed tensor."""
        graph = self._wrapped.graph
        targets = [graph.as_graph_element(t) for t in fetches] if isinstance(fetches, list) else \
            graph.as_graph_element(fetches)
        return self._wrapped.prune([graph.as_graph_element(t) for t in feeds], targets)


def _feed_names(fn, frozen) -> list[str]:
    """Placeholder tensor names of the signature's inputs, in sorted input-name
    order (nest.flatten orders dict keys so)."""
    import tensorflow as tf

    from explaind.server.errors import InvalidArgument

    flat_names = sorted(fn.structured_input_signature[1])
    placeholders = [t.name for t in frozen.inputs]
    by_name = {p.split(":")[0]: p for p in placeholders}
    if all(n in by_name for n in flat_names):
        return [by_name[n] for n in flat_names]
    flat = tf.nest.flatten(fn.structured_input_signature)
    if len(flat) != len(placeholders):
        raise InvalidArgument("cannot match the signature's inputs to its graph placeholders", field="model.artifact_uri")
    return placeholders
