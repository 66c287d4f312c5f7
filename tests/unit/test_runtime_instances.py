"""Instance parsing and batching (no TensorFlow)."""
from __future__ import annotations

import base64
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from explaind.server.errors import InvalidArgument
from explaind.server.runtime.instances import InputSpec, Instance, batch_inputs, parse_instance

SPECS = {
    "x": InputSpec("x", (None, 3), "float32"),
    "n": InputSpec("n", (None,), "int64"),
}


def field_of(fn, *args, **kwargs) -> str:
    with pytest.raises(InvalidArgument) as e:
        fn(*args, **kwargs)
    return e.value.field


def test_module_does_not_import_tensorflow():
    import explaind.server.runtime.instances  # noqa: F401

    assert "explaind.server.runtime.instances" in sys.modules
    # Other tests may have imported TensorFlow already; the module itself must not.
    src = open(explaind.server.runtime.instances.__file__).read()
    assert "import tensorflow" not in src


def test_object_with_reserved_keys():
    inst = parse_instance(
        {"x": [1, 2, 3], "n": 4, "id": 7.0, "restricts": [{"namespace": "c", "allow": ["r"]}], "crowding_tag": "t"},
        ["x", "n"],
        False,
        "instances[0]",
    )
    assert inst.inputs == {"x": [1, 2, 3], "n": 4}
    assert inst.embedding is None
    assert inst.id == "7"  # JSON numbers arrive as doubles through google.protobuf.Value
    assert inst.restricts == [{"namespace": "c", "allow": ["r"]}]
    assert inst.crowding_tag == "t"


def test_empty_strings_mean_none():
    inst = parse_instance({"x": [1, 2, 3], "n": 1, "id": "", "crowding_tag": "", "restricts": ""}, ["x", "n"], False, "i")
    assert inst.id is None and inst.crowding_tag is None and inst.restricts == ""


def test_bare_value_for_single_input():
    inst = parse_instance([1, 2, 3], ["x"], False, "instances[0]")
    assert inst.inputs == {"x": [1, 2, 3]}


def test_b64_decoded_bare_and_nested():
    raw = b"\x89PNG\x00\x01"
    b64 = base64.b64encode(raw).decode()
    assert parse_instance({"b64": b64}, ["image"], False, "i").inputs == {"image": raw}
    inst = parse_instance({"image": [{"b64": b64}, {"b64": b64}], "id": "a"}, ["image"], False, "i")
    assert inst.inputs == {"image": [raw, raw]}


def test_bad_b64_names_field():
    assert field_of(parse_instance, {"image": {"b64": "!!!"}}, ["image"], False, "instances[2]") == "instances[2].image"
    urlsafe = base64.urlsafe_b64encode(b"\xfb\xff").decode().rstrip("=")
    assert parse_instance({"b64": urlsafe}, ["image"], False, "i").inputs == {"image": b"\xfb\xff"}


def test_unknown_and_missing_keys_name_field():
    assert field_of(parse_instance, {"x": [1], "n": 1, "color": 1}, ["x", "n"], False, "instances[3]") == "instances[3].color"
    assert field_of(parse_instance, {"x": [1]}, ["x", "n"], False, "instances[3]") == "instances[3].n"
    assert field_of(parse_instance, 5, ["x", "n"], False, "instances[1]") == "instances[1]"


def test_embeddings_format():
    inst = parse_instance([0.5, 1, 2], ["x"], True, "instances[0]")
    assert inst.inputs is None
    assert inst.embedding.dtype == np.float32 and inst.embedding.tolist() == [0.5, 1.0, 2.0]
    inst = parse_instance({"embedding": [1, 2], "id": "e", "crowding_tag": "c"}, None, True, "instances[0]")
    assert inst.id == "e" and inst.crowding_tag == "c"
    assert field_of(parse_instance, {"embedding": [1, "a"]}, ["x"], True, "instances[4]") == "instances[4].embedding"
    assert field_of(parse_instance, ["a"], ["x"], True, "instances[4]") == "instances[4]"
    assert field_of(parse_instance, {"embedding": []}, None, True, "instances[0]") == "instances[0].embedding"
    assert field_of(parse_instance, {"embedding": [float("nan")]}, None, True, "i") == "i.embedding"


def test_record_with_embedding_even_when_not_embeddings_format():
    inst = parse_instance({"embedding": [1, 2], "id": 3}, ["x"], False, "r")
    assert inst.inputs is None and inst.embedding.tolist() == [1.0, 2.0] and inst.id == "3"


def test_index_only_model_requires_embeddings():
    assert field_of(parse_instance, {"x": [1]}, None, False, "instances[0]") == "instances[0]"
    assert field_of(parse_instance, {"id": "a"}, None, False, "instances[0]") == "instances[0]"


def test_bad_reserved_values():
    assert field_of(parse_instance, {"x": 1, "id": True}, ["x"], False, "i") == "i.id"
    assert field_of(parse_instance, {"x": 1, "id": [1]}, ["x"], False, "i") == "i.id"
    assert field_of(parse_instance, {"x": 1, "crowding_tag": {}}, ["x"], False, "i") == "i.crowding_tag"
    assert field_of(parse_instance, {"x": 1, "restricts": 3}, ["x"], False, "i") == "i.restricts"


# ---------------------------------------------------------------- batching


def inst(**inputs) -> Instance:
    return Instance(inputs, None, None, None, None)


def test_batch_numeric_inputs():
    out = batch_inputs([inst(x=[1, 2, 3], n=1.0), inst(x=[4, 5, 6], n=2)], SPECS)
    assert out["x"].dtype == np.float32 and out["x"].shape == (2, 3)
    assert out["n"].dtype == np.int64 and out["n"].tolist() == [1, 2]


def test_batch_errors_name_instance_and_input():
    assert field_of(batch_inputs, [inst(x=[1, 2, 3], n=1), inst(x=[1, 2], n=1)], SPECS) == "instances[1].x"
    assert field_of(batch_inputs, [inst(x=[1, 2, 3], n=1.5)], SPECS) == "instances[0].n"
    assert field_of(batch_inputs, [inst(x=[1, "a", 3], n=1)], SPECS) == "instances[0].x"
    assert field_of(batch_inputs, [inst(x=[[1], [2, 3]], n=1)], SPECS) == "instances[0].x"
    assert field_of(batch_inputs, [inst(x=[1, 2, 3])], SPECS, field_prefix="examples") == "examples[0].n"
    emb = Instance(None, np.zeros(2, np.float32), None, None, None)
    assert field_of(batch_inputs, [inst(x=[1, 2, 3], n=1), emb], SPECS) == "instances[1]"


def test_batch_variable_dims_must_agree():
    specs = {"t": InputSpec("t", (None, None), "float32")}
    assert batch_inputs([inst(t=[1, 2]), inst(t=[3, 4])], specs)["t"].shape == (2, 2)
    assert field_of(batch_inputs, [inst(t=[1, 2]), inst(t=[3])], specs) == "instances[1].t"


def test_batch_reshapes_flat_values_to_known_shape():
    # CSV cells and flattened tf.train.Example features.
    specs = {"s": InputSpec("s", (None, 1), "float32"), "img": InputSpec("img", (None, 2, 2), "float32")}
    out = batch_inputs([inst(s=3, img=[1, 2, 3, 4])], specs)
    assert out["s"].shape == (1, 1) and out["img"].tolist() == [[[1, 2], [3, 4]]]


def test_batch_strings_become_object_bytes():
    specs = {"text": InputSpec("text", (None,), "string"), "toks": InputSpec("toks", (None, 2), "string")}
    out = batch_inputs([inst(text="héllo", toks=["a", b"b"]), inst(text=b"\x00", toks=["c", "d"])], specs)
    assert out["text"].dtype == object and out["text"].tolist() == ["héllo".encode(), b"\x00"]
    assert out["toks"].shape == (2, 2) and out["toks"][0, 1] == b"b"
    assert field_of(batch_inputs, [inst(text=3, toks=["a", "b"])], specs) == "instances[0].text"


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(1, 3), min_size=0, max_size=3).map(tuple),
    batch=st.integers(1, 4),
    dtype=st.sampled_from(["float32", "float64", "int32", "int64"]),
    data=st.data(),
)
def test_batch_roundtrip_property(shape, batch, dtype, data):
    n = int(np.prod(shape, dtype=np.int64))
    values = [
        np.asarray(data.draw(st.lists(st.integers(-1000, 1000), min_size=n, max_size=n)), dtype=dtype).reshape(shape)
        for _ in range(batch)
    ]
    # As JSON would carry them: nested lists of floats.
    instances = [inst(v=v.astype(np.float64).tolist()) for v in values]
    out = batch_inputs(instances, {"v": InputSpec("v", (None,) + shape, dtype)})["v"]
    assert out.dtype == np.dtype(dtype) and out.shape == (batch,) + shape
    np.testing.assert_array_equal(out, np.stack(values))
