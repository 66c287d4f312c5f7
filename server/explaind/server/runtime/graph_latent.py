"""Find the latent tensor in a frozen signature graph (a GraphDef).

Freezing a SavedModel signature inlines its nested function calls, so every
op of a Keras layer ends up under a name scope derived from the layer's name,
e.g. "StatefulPartitionedCall/functional_1/embedding_1/Relu". Keras 3 opens
a layer's scope more than once while tracing, so the graph uniquifies it:
layer "dense" lives in scope "dense_1", and layer "dense_1" in "dense_1_2".
The name alone is therefore ambiguous, and we resolve a layer name so:

1. A layer with variables: its variables are named "<layer>/<var>" (the
   Keras variable path). We follow each variable's frozen constant to the
   ops that read it; the scope component of those ops that is the layer name
   or the layer name plus "_<n>" is the layer's scope.
2. A layer without variables (Flatten, Activation, pooling): the scopes whose
   last component is the name or name + "_<n>", minus the scopes claimed by
   other layers in step 1; the exact name wins, then the lowest suffix.

The layer's output is the tensor produced inside its scope and consumed
outside it (or a graph output). When several leave the scope (rare: a layer
returning several tensors), the one latest in topological order is used; a
caller that wants another names the tensor instead.

Pure functions over the GraphDef protobuf; no TensorFlow calls here.
"""
from __future__ import annotations

import re
from collections import defaultdict, deque
from dataclasses import dataclass

_PASSTHROUGH_PREFIX = "Func/"  # identity nodes left where function calls were inlined


def split_input(name: str) -> tuple[str, int]:
    """"node:1" -> ("node", 1); "node" -> ("node", 0)."""
    node, _, idx = name.partition(":")
    return node, int(idx) if idx.isdigit() else 0


@dataclass
class GraphIndex:
    nodes: dict  # name -> NodeDef
    consumers: dict  # node name -> list of (consumer node name, output index)
    order: dict  # node name -> topological position

    @classmethod
    def build(cls, graph_def) -> "GraphIndex":
        nodes = {n.name: n for n in graph_def.node}
        consumers: dict[str, list[tuple[str, int]]] = defaultdict(list)
        indeg = {name: 0 for name in nodes}
        for n in graph_def.node:
            for inp in n.input:
                src, idx = split_input(inp.lstrip("^"))
                if src not in nodes:
                    continue
                indeg[n.name] += 1
                if not inp.startswith("^"):
                    consumers[src].append((n.name, idx))
        # Kahn's algorithm (control edges count for order, not for data).
        out_edges: dict[str, list[str]] = defaultdict(list)
        for n in graph_def.node:
            for inp in n.input:
                src, _ = split_input(inp.lstrip("^"))
                if src in nodes:
                    out_edges[src].append(n.name)
        queue = deque(name for name, d in indeg.items() if d == 0)
        order: dict[str, int] = {}
        while queue:
            name = queue.popleft()
            order[name] = len(order)
            for dst in out_edges[name]:
                indeg[dst] -= 1
                if indeg[dst] == 0:
                    queue.append(dst)
        return cls(nodes, dict(consumers), order)


def find_tensor(index: GraphIndex, source: str) -> tuple[str | None, list[str]]:
    """An op or tensor name ("a/b/Relu:0", "a/b/Relu", or a suffix of a node
    name at a "/" boundary such as "sequential/dense_1/Relu:0") ->
    (tensor name or None, ambiguous candidates)."""
    node, _, idx = source.partition(":")
    if idx and not idx.isdigit():
        return None, []
    out = int(idx or 0)
    if node in index.nodes:
        return f"{node}:{out}", []
    matches = [n for n in index.nodes if n.endswith("/" + node)]
    if len(matches) == 1:
        return f"{matches[0]}:{out}", []
    return None, sorted(matches)


def find_scope(index: GraphIndex, source: str) -> str | None:
    """A name-scope path such as "functional_1/embedding_1" (also a suffix of
    the full path at a "/" boundary) -> the full scope, when exactly one."""
    source = source.strip("/")
    scopes = set()
    for name in index.nodes:
        full = "/" + name
        at = full.find("/" + source + "/")
        while at >= 0:
            scopes.add(full[1 : at + 1 + len(source)])
            at = full.find("/" + source + "/", at + 1)
    return scopes.pop() if len(scopes) == 1 else None


def _layer_pattern(layer: str) -> re.Pattern:
    return re.compile(re.escape(layer) + r"(_\d+)?")


def _scope_of(op_name: str, pattern: re.Pattern) -> str | None:
    parts = op_name.split("/")[:-1]  # the last part is the op's own name
    for k in range(len(parts), 0, -1):
        if pattern.fullmatch(parts[k - 1]):
            return "/".join(parts[:k])
    return None


def variable_scopes(index: GraphIndex, capture_layers: dict[str, str]) -> dict[str, list[str]]:
    """capture_layers: frozen capture node name -> layer name of the variable
    it holds. Returns layer name -> scopes whose ops read its variables."""
    scopes: dict[str, list[str]] = defaultdict(list)
    for const, layer in capture_layers.items():
        pattern = _layer_pattern(layer)
        frontier, seen = [const], set()
        while frontier:
            name = frontier.pop()
            for consumer, _ in index.consumers.get(name, ()):
                if consumer in seen:
                    continue
                seen.add(consumer)
                scope = None if consumer.startswith(_PASSTHROUGH_PREFIX) else _scope_of(consumer, pattern)
                if scope is None:
                    # Walk through the identities left where calls were inlined.
                    if index.nodes[consumer].op == "Identity":
                        frontier.append(consumer)
                    continue
                if scope not in scopes[layer]:
                    scopes[layer].append(scope)
    for layer in scopes:
        scopes[layer].sort(key=lambda s: _first_position(index, s))
    return dict(scopes)


def _first_position(index: GraphIndex, scope: str) -> int:
    prefix = scope + "/"
    return min((index.order.get(n, 0) for n in index.nodes if n.startswith(prefix)), default=0)


def layer_scope(index: GraphIndex, layer: str, var_scopes: dict[str, list[str]]) -> str | None:
    """The name scope holding `layer`'s ops (see the module docstring)."""
    if var_scopes.get(layer):
        return var_scopes[layer][0]
    claimed = {s for other, ss in var_scopes.items() if other != layer for s in ss}
    pattern = _layer_pattern(layer)
    candidates = set()
    for name in index.nodes:
        parts = name.split("/")[:-1]
        for k in range(1, len(parts) + 1):
            if pattern.fullmatch(parts[k - 1]):
                candidates.add("/".join(parts[:k]))
    candidates -= claimed
    if not candidates:
        return None

    def rank(scope: str) -> tuple[int, int, int]:
        last = scope.rsplit("/", 1)[-1]
        suffix = last[len(layer) + 1 :]
        return (scope.count("/"), int(suffix) if suffix else 0, _first_position(index, scope))

    return min(candidates, key=rank)


def scope_output(index: GraphIndex, scope: str) -> str | None:
    """The tensor produced inside `scope` and consumed outside it."""
    prefix = scope + "/"
    inside = [n for n in index.nodes if n.startswith(prefix)]
    leaving: set[tuple[str, int]] = set()
    for name in inside:
        if index.nodes[name].op in ("Const", "NoOp"):
            continue
        # Signature outputs too are consumed outside: by the final Identity ops.
        for consumer, idx in index.consumers.get(name, ()):
            if not consumer.startswith(prefix):
                leaving.add((name, idx))
    if not leaving:
        return None
    node, idx = max(leaving, key=lambda t: (index.order.get(t[0], -1), -t[1]))
    return f"{node}:{idx}"


def layer_names(var_scopes: dict[str, list[str]]) -> list[str]:
    return sorted(var_scopes)
