"""The layer -> tensor rule of graph_latent on hand-written graphs (no
TensorFlow: GraphIndex only reads name, op and input of each node)."""
from __future__ import annotations

from types import SimpleNamespace

from explaind.server.runtime import graph_latent as gl

P = "StatefulPartitionedCall/model_1"


def node(name, op="Identity", *inputs):
    return SimpleNamespace(name=name, op=op, input=list(inputs))


def graph():
    """Layers "dense" (scope dense_1, variable capture "unknown") and
    "dense_1" (scope dense_1_2, capture "unknown_0"), then a variable-free
    "act" (scope act_1)."""
    nodes = [
        node("x", "Placeholder"),
        node("unknown", "Const"),
        node("unknown_0", "Const"),
        node("Func/StatefulPartitionedCall/input/_1", "Identity", "unknown"),
        node("Func/StatefulPartitionedCall/input/_2", "Identity", "unknown_0"),
        node(f"{P}/dense_1/Cast/ReadVariableOp", "Identity", "Func/StatefulPartitionedCall/input/_1"),
        node(f"{P}/dense_1/MatMul", "MatMul", "x", f"{P}/dense_1/Cast/ReadVariableOp"),
        node(f"{P}/dense_1/Relu", "Relu", f"{P}/dense_1/MatMul"),
        node(f"{P}/dense_1_2/Cast/ReadVariableOp", "Identity", "Func/StatefulPartitionedCall/input/_2"),
        node(f"{P}/dense_1_2/MatMul", "MatMul", f"{P}/dense_1/Relu", f"{P}/dense_1_2/Cast/ReadVariableOp"),
        node(f"{P}/act_1/Tanh", "Tanh", f"{P}/dense_1_2/MatMul"),
        node("StatefulPartitionedCall/Identity", "Identity", f"{P}/act_1/Tanh", "^NoOp"),
        node("Identity", "Identity", "StatefulPartitionedCall/Identity"),
    ]
    return SimpleNamespace(node=nodes)


def resolve(layer):
    index = gl.GraphIndex.build(graph())
    scopes = gl.variable_scopes(index, {"unknown": "dense", "unknown_0": "dense_1"})
    return gl.scope_output(index, gl.layer_scope(index, layer, scopes))


def test_variables_tell_uniquified_scopes_apart():
    assert resolve("dense") == f"{P}/dense_1/Relu:0"
    assert resolve("dense_1") == f"{P}/dense_1_2/MatMul:0"


def test_layer_without_variables_and_graph_output():
    assert resolve("act") == f"{P}/act_1/Tanh:0"


def test_tensor_names_and_suffixes():
    index = gl.GraphIndex.build(graph())
    assert gl.find_tensor(index, "model_1/act_1/Tanh:0") == (f"{P}/act_1/Tanh:0", [])
    assert gl.find_tensor(index, f"{P}/dense_1/Relu") == (f"{P}/dense_1/Relu:0", [])
    tensor, ambiguous = gl.find_tensor(index, "MatMul")
    assert tensor is None and len(ambiguous) == 2
    assert gl.find_scope(index, "model_1/dense_1_2") == f"{P}/dense_1_2"
