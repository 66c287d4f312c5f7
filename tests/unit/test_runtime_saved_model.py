"""LatentModel on real TensorFlow models: the latent equals what Keras
computes for the layer, for output-key, layer-name and tensor-name sources."""
from __future__ import annotations

import base64
import os
import subprocess
import sys

import numpy as np
import pytest

from explaind.server.errors import InvalidArgument
from explaind.server.runtime import saved_model as sm
from explaind.server.runtime.instances import batch_inputs, parse_instance
from explaind.server.runtime.saved_model import LatentModel
from tests import models

pytestmark = pytest.mark.slow

ARTIFACT = "model.artifact_uri"
LATENT = "model.explanation_spec.metadata.latent_space_source"
TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Every model once per module: name -> artifact path."""
    d = tmp_path_factory.mktemp("models")
    return {
        "tab_export": models.tabular_embedding_model(str(d / "tab_export")),
        "tab_saved": models.tabular_embedding_model(str(d / "tab_saved"), how="saved_model"),
        "seq_saved": models.sequential_model(str(d / "seq_saved")),
        "seq_export": models.sequential_model(str(d / "seq_export"), how="export"),
        "img_export": models.image_model(str(d / "img_export")),
        "img_saved": models.image_model(str(d / "img_saved"), how="saved_model"),
        "keras_file": models.keras_file_model(str(d / "tab_file")),
        "multi": models.multi_input_model(str(d / "multi")),
        "signature": models.signature_embedding_model(str(d / "signature")),
        "text": models.text_model(str(d / "text")),
        "nested_export": models.nested_model(str(d / "nested_export")),
        "nested_saved": models.nested_model(str(d / "nested_saved"), how="saved_model"),
        "counting": models.counting_model(str(d / "counting")),
    }


def field_of(fn, *args, **kwargs) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as e:
        fn(*args, **kwargs)
    return e.value


LAYER_CASES = [
    ("tab_export", ["hidden", "embedding", "logits"]),
    ("tab_saved", ["hidden", "embedding"]),
    # "dense_1" is also the uniquified scope of layer "dense": the variable rule must tell them apart.
    ("seq_saved", ["dense", "dense_1", "dense_2"]),
    ("seq_export", ["dense", "dense_1"]),
    ("img_export", ["conv", "conv_1", "pool", "flatten", "embedding"]),
    ("img_saved", ["conv_1", "pool", "embedding"]),
    ("keras_file", ["hidden", "embedding"]),
]


@pytest.mark.parametrize("name,layers", LAYER_CASES, ids=[c[0] for c in LAYER_CASES])
def test_layer_latent_equals_keras(built, name, layers):
    path = built[name]
    for layer in layers:
        model = LatentModel.load(path, layer)
        shape = model.input_specs[model.input_names[0]].shape[1:]
        x = models.random_inputs(7, shape, seed=3)
        got = model.embed({model.input_names[0]: x})
        want = models.keras_layer_latent(path, layer, x)
        assert got.dtype == np.float32 and got.shape == want.shape == (7, model.latent_dim), layer
        np.testing.assert_allclose(got, want, **TOL, err_msg=f"{name}:{layer}")


@pytest.mark.parametrize("name", ["nested_export", "nested_saved"])
def test_nested_model_layers(built, name):
    path = built[name]
    outer = models.BUILT[path]
    x = models.random_inputs(6, (8,), seed=5)
    for layer, oracle_model in [("encoder", outer), ("proj", outer), ("norm", outer), ("head", outer),
                                ("dense_a", outer.get_layer("encoder")), ("bn", outer.get_layer("encoder")),
                                ("act", outer.get_layer("encoder"))]:
        model = LatentModel.load(path, layer)
        got = model.embed({model.input_names[0]: x})  # "features", or "inputs" after tf.saved_model.save
        np.testing.assert_allclose(got, models.keras_layer_latent(oracle_model, layer, x), **TOL, err_msg=layer)
    # Dropout computes nothing at inference, so the graph has no op to find.
    err = field_of(LatentModel.load, path, "drop")
    assert err.field == LATENT and "Dropout" in err.message


def test_tensor_name_sources(built):
    path = built["tab_export"]
    x = models.random_inputs(4, (8,))
    want = models.keras_layer_latent(path, "embedding", x)
    tensor = LatentModel.load(path, "embedding").latent_tensor
    assert tensor and tensor.endswith(":0")
    suffix = "/".join(tensor.split("/")[-2:])  # e.g. "embedding_1/Tanh:0", as users copy it
    for source in (tensor, tensor[: -len(":0")], suffix):
        model = LatentModel.load(path, source)
        np.testing.assert_allclose(model.embed({"features": x}), want, **TOL, err_msg=source)


def test_named_tensor_in_tf_module(built):
    model = LatentModel.load(built["text"], "lengths")
    texts = [b"a", b"hello", "héllo".encode()]
    got = model.embed({"text": np.array(texts, dtype=object)})
    assert model.latent_dim == 1
    np.testing.assert_allclose(got[:, 0], models.text_oracle(texts)[:, 0])


def test_output_key_latent(built):
    path = built["signature"]
    x = models.random_inputs(5, (4,))
    oracle = models.signature_oracle(path, x)
    for key in ("embedding", "probabilities"):
        model = LatentModel.load(path, key)
        np.testing.assert_allclose(model.embed({"x": x}), oracle[key], **TOL)
    assert model.output_names == ["embedding", "probabilities"]
    assert model.latent_dim == 3
    out = model.predict({"x": x})
    np.testing.assert_allclose(out["embedding"], oracle["embedding"], **TOL)


def test_empty_source_single_output_is_the_output(built):
    path = built["tab_export"]
    model = LatentModel.load(path, "")
    x = models.random_inputs(3, (8,))
    keras_model = models.BUILT[path]
    np.testing.assert_allclose(model.embed({"features": x}), np.asarray(keras_model(x)), **TOL)
    assert model.latent_dim == 3 and model.output_names == ["output_0"]
    np.testing.assert_allclose(model.predict({"features": x})["output_0"], np.asarray(keras_model(x)), **TOL)


def test_empty_source_several_outputs_lists_them(built):
    err = field_of(LatentModel.load, built["signature"], "")
    assert err.field == LATENT
    assert "embedding" in err.message and "probabilities" in err.message


def test_unknown_source_lists_what_exists(built):
    err = field_of(LatentModel.load, built["tab_export"], "no_such_layer")
    assert err.field == LATENT
    assert "output_0" in err.message and "embedding" in err.message and "hidden" in err.message
    err = field_of(LatentModel.load, built["keras_file"], "nope")
    assert err.field == LATENT and "embedding" in err.message


def test_artifact_errors(built, tmp_path):
    assert field_of(LatentModel.load, str(tmp_path / "missing"), "").field == ARTIFACT
    empty = tmp_path / "empty"
    empty.mkdir()
    assert field_of(LatentModel.load, str(empty), "").field == ARTIFACT
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "saved_model.pb").write_bytes(b"not a protobuf")
    assert field_of(LatentModel.load, str(corrupt), "").field == ARTIFACT
    err = field_of(LatentModel.load, built["tab_export"], "", signature_name="predict")
    assert err.field == ARTIFACT and "serving_default" in err.message
    assert field_of(LatentModel.load, "", "").field == ARTIFACT


def test_file_and_fsspec_urls(built):
    import fsspec

    path = built["tab_export"]
    x = models.random_inputs(2, (8,))
    want = models.keras_layer_latent(path, "embedding", x)
    model = LatentModel.load("file://" + path, "embedding")
    np.testing.assert_allclose(model.embed({"features": x}), want, **TOL)
    fs = fsspec.filesystem("memory")
    fs.put(path, "/models/tab", recursive=True)
    model = LatentModel.load("memory://models/tab", "embedding")
    np.testing.assert_allclose(model.embed({"features": x}), want, **TOL)
    assert field_of(LatentModel.load, "memory://models/absent", "").field == ARTIFACT


def test_keras_file_model(built):
    path = built["keras_file"]
    model = LatentModel.load(path, "")
    x = models.random_inputs(3, (8,))
    assert model.input_names == ["features"] and model.latent_dim == 3
    np.testing.assert_allclose(model.predict({"features": x})["logits"], np.asarray(models.BUILT[path](x)), **TOL)


def test_multi_input_from_json_instances(built):
    path = built["multi"]
    model = LatentModel.load(path, "joint")
    assert {n: (s.shape, s.dtype) for n, s in model.input_specs.items()} == {
        "a": ((None, 3), "float32"),
        "b": ((None,), "int64"),
    }
    values = [{"a": [0.1, 0.2, 0.3], "b": 2.0, "id": "x"}, {"a": [1, 2, 3], "b": 9}]
    instances = [parse_instance(v, model.input_names, False, f"instances[{i}]") for i, v in enumerate(values)]
    inputs = batch_inputs(instances, model.input_specs)
    want = models.keras_layer_latent(path, "joint", [inputs["a"], inputs["b"]])
    np.testing.assert_allclose(model.embed(inputs), want, **TOL)


def test_string_input_from_b64_instances(built):
    model = LatentModel.load(built["text"], "features")
    raw = [b"\x89PNG\r\n", b"abc"]
    instances = [
        parse_instance({"b64": base64.b64encode(r).decode()}, model.input_names, False, f"instances[{i}]")
        for i, r in enumerate(raw)
    ]
    got = model.embed(batch_inputs(instances, model.input_specs))
    np.testing.assert_allclose(got, models.text_oracle(raw), **TOL)
    assert model.input_specs["text"].dtype == "string"


def test_large_batches_are_chunked(built, monkeypatch):
    model = LatentModel.load(built["img_export"], "embedding")
    x = models.random_inputs(10, (8, 8, 1))
    whole = model.embed({"image": x})
    monkeypatch.setattr(sm, "MAX_ROWS_PER_CALL", 3)
    np.testing.assert_allclose(model.embed({"image": x}), whole, **TOL)
    assert model.embed({"image": x[:0]}).shape == (0, 10)


def test_import_does_not_load_tensorflow():
    code = "import sys, explaind.server.runtime.saved_model; assert 'tensorflow' not in sys.modules"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


def test_scope_path_and_ambiguous_op_names(built):
    path = built["tab_export"]
    tensor = LatentModel.load(path, "embedding").latent_tensor
    scope = tensor.rsplit("/", 1)[0]  # ".../embedding_1", a name-scope path
    x = models.random_inputs(2, (8,))
    model = LatentModel.load(path, "/".join(scope.split("/")[-2:]))
    np.testing.assert_allclose(model.embed({"features": x}), models.keras_layer_latent(path, "embedding", x), **TOL)
    err = field_of(LatentModel.load, path, "MatMul")
    assert err.field == LATENT and "several" in err.message


def inputs_for(model: LatentModel, n: int, seed: int = 4) -> dict[str, np.ndarray]:
    """n rows of every input of `model`, by its specs: words, small ids, or normal floats."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, spec in model.input_specs.items():
        shape = (n, *spec.shape[1:])
        if spec.dtype == "string":
            out[name] = np.array([("w" * (i + 1)).encode() for i in range(n)], dtype=object)
        elif spec.dtype.startswith("int"):
            out[name] = rng.integers(0, 10, size=shape).astype(spec.dtype)
        else:
            out[name] = rng.normal(size=shape).astype(spec.dtype)
    return out


# Latents that are layers, tensors of the frozen graph, or one of the signature's outputs.
ONE_RUN_CASES = [("tab_export", "embedding"), ("tab_saved", "hidden"), ("seq_saved", "dense_1"),
                 ("img_export", "pool"), ("img_saved", "embedding"), ("keras_file", "embedding"),
                 ("multi", "joint"), ("nested_export", "bn"), ("nested_saved", "proj"), ("text", "lengths"),
                 ("signature", "embedding"), ("signature", "probabilities"), ("tab_export", "")]


@pytest.mark.parametrize("name,source", ONE_RUN_CASES, ids=[f"{n}:{s or 'empty'}" for n, s in ONE_RUN_CASES])
def test_one_run_answers_embed_and_predict(built, name, source):
    """embed_and_predict (serving's Explain) answers what a build's embed and the signature's
    predict answer apart, for every kind of latent."""
    path = built[name]
    serving = LatentModel.load(path, source, with_outputs=True)
    alone = LatentModel.load(path, source)           # as a build loads it: the latent only
    inputs = inputs_for(serving, 5)
    latent, outputs = serving.embed_and_predict(inputs)
    assert serving.latent_dim == alone.latent_dim
    assert latent.dtype == np.float32 and latent.shape == (5, alone.latent_dim)
    np.testing.assert_allclose(latent, alone.embed(inputs), **TOL)
    np.testing.assert_allclose(serving.embed(inputs), latent, **TOL)
    expected = alone.predict(inputs)
    assert sorted(outputs) == sorted(expected) == sorted(serving.output_names)
    for key, value in expected.items():
        assert outputs[key].shape == value.shape, key
        np.testing.assert_allclose(outputs[key], value, **TOL, err_msg=key)


def test_one_run_against_keras(built):
    """The same from an independent oracle: Keras' own layer output and model output."""
    path = built["img_export"]
    x = models.random_inputs(4, (8, 8, 1), seed=8)
    latent, outputs = LatentModel.load(path, "flatten", with_outputs=True).embed_and_predict({"image": x})
    np.testing.assert_allclose(latent, models.keras_layer_latent(path, "flatten", x), **TOL)
    np.testing.assert_allclose(outputs["output_0"], np.asarray(models.BUILT[path](x)), **TOL)


def test_one_run_is_one_signature_run(built):
    """A latent that is an output comes from the very run that answers the outputs: the model's
    own count of its runs goes up by one per call (by two for embed then predict)."""
    path = built["counting"]
    model = LatentModel.load(path, "embedding", with_outputs=True)
    x = models.random_inputs(3, (4,), seed=2)
    latent, outputs = model.embed_and_predict({"features": x})
    first = outputs["runs"][0]
    latent, outputs = model.embed_and_predict({"features": x})
    assert list(outputs["runs"]) == [first + 1] * 3
    np.testing.assert_allclose(latent, models.counting_oracle(path, x), **TOL)
    model.embed({"features": x})
    assert model.predict({"features": x})["runs"][0] == first + 3


def test_one_run_chunks_large_batches(built, monkeypatch):
    model = LatentModel.load(built["tab_saved"], "hidden", with_outputs=True)
    inputs = inputs_for(model, 10)
    whole_latent, whole_outputs = model.embed_and_predict(inputs)
    monkeypatch.setattr(sm, "MAX_ROWS_PER_CALL", 3)
    latent, outputs = model.embed_and_predict(inputs)
    np.testing.assert_allclose(latent, whole_latent, **TOL)
    assert sorted(outputs) == sorted(whole_outputs)
    for key in outputs:
        np.testing.assert_allclose(outputs[key], whole_outputs[key], **TOL)
    latent, outputs = model.embed_and_predict({k: v[:0] for k, v in inputs.items()})
    assert latent.shape == (0, 32) and all(len(v) == 0 for v in outputs.values())


def test_a_build_load_prepares_no_outputs_run(built):
    """Builds only embed: without with_outputs there is no run for both, and asking is a program error."""
    model = LatentModel.load(built["tab_export"], "embedding")
    with pytest.raises(RuntimeError, match="with_outputs"):
        model.embed_and_predict({"features": models.random_inputs(1, (8,))})


def test_warm_up_runs_the_model_once_at_load(built, tmp_path):
    """Serving warms a model up with a row of zeros (TensorFlow's first-call work at load); a model
    with an input of free shape is left cold, and so is one that refuses the row."""
    counting = LatentModel.load(built["counting"], "embedding", with_outputs=True)
    x = models.random_inputs(1, (4,))
    assert counting.warm_up() is True
    assert counting.predict({"features": x})["runs"][0] == 2
    assert LatentModel.load(built["text"], "lengths", with_outputs=True).warm_up() is True
    free = LatentModel.load(models.variable_length_model(str(tmp_path / "free")), "embedding", with_outputs=True)
    assert free.warm_up() is False
    assert LatentModel.load(built["img_export"], "embedding").warm_up() is False      # a build's load: no run
    assert LatentModel.load(_png_model(str(tmp_path / "png")), "embedding", with_outputs=True).warm_up() is False


def _png_model(path: str) -> str:
    """A SavedModel whose string input must be a PNG picture: an empty string is refused."""
    import tensorflow as tf

    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image")])
        def serve(self, image):
            pixels = tf.map_fn(lambda b: tf.reduce_mean(tf.cast(tf.io.decode_png(b, channels=1), tf.float32)),
                               image, fn_output_signature=tf.float32)
            return {"embedding": tf.stack([pixels, pixels], axis=1)}

    module = Module()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path
