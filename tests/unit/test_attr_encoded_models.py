"""Feature attributions of the models Vertex explained through their metadata, on real TensorFlow
models: a Keras text classifier explained over its embedding, a tabular model with a one-hot
category, a multi-hot bag and a sparse bag, groups, Google's image notebook (xai_preprocess and
xai_model signatures), exact and sampled Shapley on a nonlinear model. Each answer is checked
against an oracle computed apart (tests/oracles.py: tf.GradientTape, enumeration)."""
import base64

import numpy as np
import pytest
from google.protobuf import json_format

from explaind.server.attributions import FeatureExplainer
from explaind.server.errors import InvalidArgument
from explaind.v1 import explanation_pb2 as pb
from tests import attr_models, oracles

pytestmark = pytest.mark.slow


def _spec(parameters, metadata=None):
    spec = pb.ExplanationSpec(parameters=json_format.ParseDict(parameters, pb.ExplanationParameters()))
    if metadata:
        spec.metadata.CopyFrom(json_format.ParseDict(metadata, pb.ExplanationMetadata()))
    return spec


def _dict(message):
    return json_format.MessageToDict(message)


# ----- the text classifier: integer tokens -> Embedding -> mean -> Dense ------------------------

TEXT_METADATA = {"inputs": {"words": {"inputTensorName": "tokens", "encodedTensorName": "embedding",
                                      "encoding": "CONCAT_EMBEDDING", "modality": "text"}},
                 "outputs": {"sentiment": {"outputTensorName": "output_0"}}}


@pytest.fixture(scope="module")
def text():
    path, weights = attr_models.text_classifier()
    tokens, _ = attr_models.text_data(40, seed=9)
    return path, weights, tokens[:6]


def _text_output(weights, index):
    """The classifier from its embedding on: softmax(mean(E) @ K + b)[index], for tf.GradientTape."""
    import tensorflow as tf

    kernel, bias = tf.constant(weights["kernel"]), tf.constant(weights["bias"])

    def output(embedded):
        return tf.nn.softmax(tf.reduce_mean(embedded, axis=-2) @ kernel + bias)[..., index]
    return output


def test_text_integrated_gradients_over_the_embedding_are_per_token_complete_and_equal_an_independent_ig(text):
    path, weights, tokens = text
    explainer = FeatureExplainer.load(path, _spec({"integratedGradientsAttribution": {"stepCount": 50}, "topK": -1},
                                                  TEXT_METADATA))
    for row, attributions in zip(tokens, explainer.explain({"tokens": tokens})):
        embedded = weights["embedding"][row]
        assert len(attributions) == 2
        for attribution in attributions:
            per_token = np.array(_dict(attribution.feature_attributions)["words"])
            assert per_token.shape == (attr_models.TEXT_LENGTH,)
            gap = attribution.instance_output_value - attribution.baseline_output_value
            assert abs(per_token.sum() - gap) <= 0.01 * abs(gap)                  # completeness within 1%
            oracle = oracles.integrated_gradients_tf(_text_output(weights, attribution.output_index[0]),
                                                     embedded, np.zeros_like(embedded))
            np.testing.assert_allclose(per_token, oracle.sum(axis=-1), rtol=2e-3, atol=1e-5)
            assert attribution.baseline_output_value == pytest.approx(
                float(_text_output(weights, attribution.output_index[0])(np.zeros((1,) + embedded.shape))[0]), rel=1e-5)


def test_text_baselines_given_as_tokens_are_encoded_and_encoded_baselines_taken_as_they_are(text):
    path, weights, tokens = text
    padding = {"inputs": {"words": dict(TEXT_METADATA["inputs"]["words"], inputBaselines=[[0] * 8])},
               "outputs": TEXT_METADATA["outputs"]}
    explainer = FeatureExplainer.load(path, _spec({"integratedGradientsAttribution": {"stepCount": 50},
                                                   "outputIndices": [1]}, padding))
    (attribution,) = explainer.explain({"tokens": tokens[:1]})[0]
    pad = np.repeat(weights["embedding"][:1], 8, axis=0)        # the padding token's embedding, everywhere
    output = _text_output(weights, 1)
    assert attribution.baseline_output_value == pytest.approx(float(output(pad[None])[0]), rel=1e-5)
    oracle = oracles.integrated_gradients_tf(output, weights["embedding"][tokens[0]], pad)
    np.testing.assert_allclose(_dict(attribution.feature_attributions)["words"], oracle.sum(-1), rtol=2e-3, atol=1e-5)
    half = {"inputs": {"words": dict(TEXT_METADATA["inputs"]["words"], encodedBaselines=[0.5])},
            "outputs": TEXT_METADATA["outputs"]}
    (attribution,) = FeatureExplainer.load(path, _spec({"integratedGradientsAttribution": {"stepCount": 50},
                                                        "outputIndices": [1]}, half)).explain({"tokens": tokens[:1]})[0]
    assert attribution.baseline_output_value == pytest.approx(float(output(np.full((1, 8, 6), 0.5))[0]), rel=1e-5)


def test_text_smoothgrad_perturbs_the_embedding_and_shapley_switches_tokens(text):
    path, _, tokens = text
    plain = FeatureExplainer.load(path, _spec({"integratedGradientsAttribution": {"stepCount": 20}}, TEXT_METADATA))
    smooth = FeatureExplainer.load(path, _spec({"integratedGradientsAttribution": {"stepCount": 20, "smoothGradConfig": {
        "noisySampleCount": 10, "featureNoiseSigma": {"noiseSigma": [{"name": "words", "sigma": 0.05}]}}}},
        TEXT_METADATA))
    a = np.array(_dict(plain.explain({"tokens": tokens[:1]})[0][0].feature_attributions)["words"])
    b = np.array(_dict(smooth.explain({"tokens": tokens[:1]})[0][0].feature_attributions)["words"])
    assert not np.allclose(a, b) and np.corrcoef(a, b)[0, 1] > 0.9
    # Sampled Shapley needs no gradients: it switches the tokens themselves (baseline: padding).
    shapley = FeatureExplainer.load(path, _spec({"sampledShapleyAttribution": {"pathCount": 10}}, TEXT_METADATA))
    (attribution,) = shapley.explain({"tokens": tokens[:1]})[0]
    values = np.array(_dict(attribution.feature_attributions)["words"])
    assert values.shape == (8,) and attribution.shapley_computation == pb.Attribution.SAMPLED
    assert values.sum() == pytest.approx(attribution.instance_output_value - attribution.baseline_output_value, abs=1e-6)
    assert np.all(np.array(_dict(attribution.feature_attribution_errors)["words"]) >= 0)


def test_gradients_flow_through_a_recurrent_layer_from_its_embedding():
    """The Vertex text notebook's shape (Embedding -> LSTM -> Dense): the loop stays a functional
    While op in the frozen graph, so integrated gradients over the embedding reach through it."""
    import tensorflow as tf

    path, head, table = attr_models.recurrent_text_classifier()
    tokens, _ = attr_models.text_data(3, seed=4)
    explainer = FeatureExplainer.load(path, _spec({"integratedGradientsAttribution": {"stepCount": 50}}, TEXT_METADATA))
    for row, (attribution,) in zip(tokens, explainer.explain({"tokens": tokens})):
        oracle = oracles.integrated_gradients_tf(lambda points: head(tf.cast(points, tf.float32))[:, 0], table[row],
                                                 np.zeros_like(table[row]), steps=400)
        np.testing.assert_allclose(_dict(attribution.feature_attributions)["words"], oracle.sum(-1),
                                   rtol=1e-2, atol=1e-5)


def test_an_input_may_name_a_tensor_inside_the_graph(text):
    """inputTensorName names the embedding's output itself: every element answers, and summing each
    token's elements gives what the embedding as encoded tensor of the tokens gives."""
    path, _, tokens = text
    inner = {"inputs": {"embedded": {"inputTensorName": "embedding"}}, "outputs": TEXT_METADATA["outputs"]}
    parameters = {"integratedGradientsAttribution": {"stepCount": 30}, "outputIndices": [1]}
    (attribution,) = FeatureExplainer.load(path, _spec(parameters, inner)).explain({"tokens": tokens[:1]})[0]
    (encoded,) = FeatureExplainer.load(path, _spec(parameters, TEXT_METADATA)).explain({"tokens": tokens[:1]})[0]
    elements = np.array(_dict(attribution.feature_attributions)["embedded"])
    assert elements.shape == (attr_models.TEXT_LENGTH, attr_models.TEXT_DIMENSIONS)
    np.testing.assert_allclose(elements.sum(axis=-1), _dict(encoded.feature_attributions)["words"], rtol=1e-6)


def test_values_the_model_refuses_are_the_requests_fault(text, notebook):
    """A token past the vocabulary, in an instance or a baseline override, or bytes that are no
    picture: INVALID_ARGUMENT naming the instances, as the model says."""
    from explaind.server.runtime.feature_model import FeatureModel

    path, _, tokens = text
    model = FeatureModel.load(path, _spec({"integratedGradientsAttribution": {"stepCount": 5}}, TEXT_METADATA))
    hostile = tokens[:1].copy()
    hostile[0, 3] = 10 ** 6
    for inputs, override in (({"tokens": hostile}, None), ({"tokens": tokens[:1]}, json_format.ParseDict(
            {"metadata": {"inputs": {"words": {"inputBaselines": [[10 ** 6] * 8]}}}}, pb.ExplanationSpecOverride()))):
        with pytest.raises(InvalidArgument) as error:
            model.explain(inputs, override)
        assert error.value.field == "instances" and "1000000" in error.value.message
    with pytest.raises(InvalidArgument):
        model.predict({"tokens": hostile})
    image = FeatureModel.load(notebook[0], _spec({"integratedGradientsAttribution": {"stepCount": 5}}, IMAGE_METADATA))
    with pytest.raises(InvalidArgument) as error:
        image.explain({"bytes_inputs": np.array([b"not a picture"], dtype=object)})
    assert error.value.field == "instances"
    model.close()
    image.close()


def test_text_refusals_name_the_metadata_field(text):
    path, _, _ = text
    for metadata, field in (
            ({"inputs": {"words": {"inputTensorName": "tokens"}}}, "inputs[words].input_tensor_name"),
            ({"inputs": {"words": {"inputTensorName": "tokens", "encodedTensorName": "no_such_layer"}}},
             "inputs[words].encoded_tensor_name"),
            ({"inputs": {"words": {"inputTensorName": "tokens", "encodedTensorName": "pooling",
                                   "encoding": "CONCAT_EMBEDDING"}}}, "inputs[words].encoded_tensor_name"),
            ({"inputs": {"words": {"inputTensorName": "tokens", "encodedTensorName": "embedding",
                                   "encodedBaselines": [[0.0] * 5]}}}, "inputs[words].encoded_baselines[0]")):
        with pytest.raises(InvalidArgument) as error:
            FeatureExplainer.load(path, _spec({"integratedGradientsAttribution": {}}, metadata))
        assert error.value.field == f"model.explanation_spec.metadata.{field}", error.value.message


# ----- tabular: a one-hot category, a multi-hot bag, a number; groups ---------------------------

TABULAR_METADATA = {"inputs": {
    "color": {"inputTensorName": "color", "encodedTensorName": "color_onehot", "modality": "categorical"},
    "tags": {"inputTensorName": "tags", "encoding": "INDICATOR", "indexFeatureMapping": list(attr_models.TAB_TAGS)},
    "size": {"inputTensorName": "size"}}, "outputs": {"price": {"outputTensorName": "price"}}}
ROWS = {"color": np.array([[2], [1], [3]], np.int32), "tags": np.array([[1, 0, 1, 0, 0], [0, 1, 1, 1, 0], [1, 1, 1, 1, 1]],
                                                                      np.float32),
        "size": np.array([[1.5], [-0.5], [0.3]], np.float32)}


def _tabular_price(layers):
    import tensorflow as tf

    def price(joined):
        hidden = joined
        for position, (kernel, bias) in enumerate(layers):
            hidden = hidden @ tf.constant(kernel) + tf.constant(bias)
            hidden = tf.tanh(hidden) if position < len(layers) - 1 else hidden
        return hidden[..., 0]
    return price


def _joined(i):
    onehot = np.eye(len(attr_models.TAB_COLORS))[ROWS["color"][i, 0]]
    return np.concatenate([onehot, ROWS["tags"][i], ROWS["size"][i]])


def test_tabular_one_hot_and_multi_hot_inputs_answer_per_feature_name_and_equal_an_independent_ig():
    path, layers = attr_models.tabular_model()
    explainer = FeatureExplainer.load(path, _spec({"integratedGradientsAttribution": {"stepCount": 50}},
                                                  TABULAR_METADATA))
    for i, (attribution,) in enumerate(explainer.explain(ROWS)):
        got = _dict(attribution.feature_attributions)
        assert set(got) == {"color", "size", *attr_models.TAB_TAGS}
        oracle = oracles.integrated_gradients_tf(_tabular_price(layers), _joined(i), np.zeros(10))
        assert got["color"] == pytest.approx([oracle[:4].sum()], rel=2e-3, abs=1e-5)        # shaped like the input
        assert [got[tag] for tag in attr_models.TAB_TAGS] == pytest.approx(list(oracle[4:9]), rel=2e-3, abs=1e-5)
        assert got["size"] == pytest.approx([oracle[9]], rel=2e-3, abs=1e-5)
        assert attribution.approximation_error < 0.01


def test_tabular_groups_merge_for_gradients_and_are_one_player_for_exact_shapley():
    import tensorflow as tf

    path, _ = attr_models.tabular_model()
    grouped = {"inputs": dict(TABULAR_METADATA["inputs"]), "outputs": TABULAR_METADATA["outputs"]}
    grouped["inputs"]["color"] = dict(grouped["inputs"]["color"], groupName="physical")
    grouped["inputs"]["size"] = dict(grouped["inputs"]["size"], groupName="physical")
    separate = FeatureExplainer.load(path, _spec({"integratedGradientsAttribution": {"stepCount": 50}},
                                                 TABULAR_METADATA)).explain(ROWS)
    merged = FeatureExplainer.load(path, _spec({"integratedGradientsAttribution": {"stepCount": 50}}, grouped)).explain(ROWS)
    for (apart,), (together,) in zip(separate, merged):
        apart, together = _dict(apart.feature_attributions), _dict(together.feature_attributions)
        assert set(together) == {"physical", *attr_models.TAB_TAGS}
        assert together["physical"] == pytest.approx(apart["color"][0] + apart["size"][0], rel=1e-9)
    # Sampled Shapley over 6 players (5 tags, the group): 2^6 = 64 coalitions <= 50 x 6, so exact.
    shapley = FeatureExplainer.load(path, _spec({"sampledShapleyAttribution": {"pathCount": 50}}, grouped))
    loaded = tf.saved_model.load(path)
    serve = loaded.signatures["serving_default"]
    for i, (attribution,) in enumerate(shapley.explain(ROWS)):
        assert attribution.shapley_computation == pb.Attribution.EXACT
        got = _dict(attribution.feature_attributions)

        def value(coalition, i=i):        # players 0..4: the tags in order; 5: color and size together
            tags = np.where(np.isin(np.arange(5), list(coalition)), ROWS["tags"][i], 0.0)
            inside = 5 in coalition
            return float(serve(color=np.array([[ROWS["color"][i, 0] if inside else 0]], np.int32),
                               tags=tags[None].astype(np.float32),
                               size=np.array([[ROWS["size"][i, 0] if inside else 0.0]], np.float32))["price"][0, 0])
        oracle = oracles.shapley_by_enumeration(value, 6)
        assert [got[tag] for tag in attr_models.TAB_TAGS] + [got["physical"]] == pytest.approx(list(oracle), abs=1e-5)


def test_sparse_bag_values_go_to_the_names_of_their_indices():
    path, (w, v) = attr_models.sparse_bag_model()
    metadata = {"inputs": {"tags": {"inputTensorName": "tag_weights", "indicesTensorName": "tag_ids",
                                    "encoding": "BAG_OF_FEATURES_SPARSE",
                                    "indexFeatureMapping": list(attr_models.TAB_TAGS)}}}
    ids = np.array([[0, 2, 2], [4, 1, 3]], np.int32)
    weights = np.array([[1.0, 0.5, 0.25], [2.0, 1.0, 0.0]], np.float32)
    explainer = FeatureExplainer.load(path, _spec({"integratedGradientsAttribution": {"stepCount": 50}}, metadata))
    import tensorflow as tf

    def score(bag):
        return (tf.tanh(bag @ tf.constant(w)) @ tf.constant(v))[..., 0]
    for row_ids, row_weights, (attribution,) in zip(ids, weights, explainer.explain({"tag_ids": ids, "tag_weights": weights})):
        bag = np.zeros(5)
        np.add.at(bag, row_ids, row_weights)
        oracle = oracles.integrated_gradients_tf(score, bag, np.zeros(5))   # along the dense bag: the same path
        got = _dict(attribution.feature_attributions)
        assert [got[tag] for tag in attr_models.TAB_TAGS] == pytest.approx(list(oracle), rel=2e-3, abs=1e-6)


def test_tabular_refusals_name_the_metadata_field():
    path, _ = attr_models.tabular_model()
    wrong_length = {"inputs": dict(TABULAR_METADATA["inputs"], tags={"inputTensorName": "tags", "encoding": "INDICATOR",
                                                                     "indexFeatureMapping": ["a", "b", "c"]})}
    with pytest.raises(InvalidArgument) as error:
        FeatureExplainer.load(path, _spec({"integratedGradientsAttribution": {}}, wrong_length))
    assert error.value.field == "model.explanation_spec.metadata.inputs[tags].index_feature_mapping"
    no_encoding = {"inputs": dict(TABULAR_METADATA["inputs"], color={"inputTensorName": "color"})}
    with pytest.raises(InvalidArgument) as error:
        FeatureExplainer.load(path, _spec({"integratedGradientsAttribution": {}}, no_encoding))
    assert error.value.field == "model.explanation_spec.metadata.inputs[color].input_tensor_name"
    assert "encoded_tensor_name" in error.value.message
    FeatureExplainer.load(path, _spec({"sampledShapleyAttribution": {"pathCount": 3}}, no_encoding))  # no gradients


# ----- exact and sampled Shapley on a nonlinear model ---------------------------------------------

def test_shapley_is_exact_when_enumeration_is_cheaper_and_sampled_within_its_standard_error():
    import tensorflow as tf

    path = attr_models.mlp_model()
    loaded = tf.saved_model.load(path)
    serve = loaded.signatures["serving_default"]
    x = np.random.default_rng(7).normal(size=(1, 6)).astype(np.float32)

    def value(coalition):
        row = np.where(np.isin(np.arange(6), list(coalition)), x[0], 0.0).astype(np.float32)
        return float(serve(features=row[None])["output_0"][0, 1])
    oracle = oracles.shapley_by_enumeration(value, 6)
    # 6 features: 2^6 = 64 rows <= 11 x 6 = 66 (exact), > 10 x 6 = 60 (sampled).
    (exact,) = FeatureExplainer.load(path, _spec({"sampledShapleyAttribution": {"pathCount": 11},
                                                  "outputIndices": [1]})).explain({"features": x})[0]
    assert exact.shapley_computation == pb.Attribution.EXACT
    assert _dict(exact.feature_attributions)["features"] == pytest.approx(list(oracle), abs=1e-5)
    (sampled,) = FeatureExplainer.load(path, _spec({"sampledShapleyAttribution": {"pathCount": 10},
                                                    "outputIndices": [1]})).explain({"features": x})[0]
    assert sampled.shapley_computation == pb.Attribution.SAMPLED
    estimate = np.array(_dict(sampled.feature_attributions)["features"])
    error = np.array(_dict(sampled.feature_attribution_errors)["features"])
    assert np.all(error > 0) and np.all(np.abs(estimate - oracle) <= 4 * error)


# ----- Google's image notebook: xai_preprocess and xai_model signatures ----------------------------

IMAGE_METADATA = {"inputs": {"image": {"inputTensorName": "numpy_inputs", "modality": "image"}},
                  "outputs": {"class": {"outputTensorName": "output_0"}}}


@pytest.fixture(scope="module")
def notebook():
    import tensorflow as tf

    path = attr_models.image_notebook_model()
    pictures = attr_models.jpeg_images(3, seed=1)
    loaded = tf.saved_model.load(path)            # holds the variables the signatures read
    return path, pictures, loaded.signatures, loaded


def test_the_image_notebook_explains_the_model_signature_fed_through_preprocessing(notebook):
    import tensorflow as tf

    path, pictures, signatures, _ = notebook
    explainer = FeatureExplainer.load(path, _spec({"integratedGradientsAttribution": {"stepCount": 50}}, IMAGE_METADATA))
    assert list(explainer.model.inputs) == ["bytes_inputs"]             # what a request carries
    batch = explainer.explain_batch({"bytes_inputs": np.array(pictures, dtype=object)})
    served = signatures["serving_default"](bytes_inputs=tf.constant(pictures))["output_0"].numpy()
    np.testing.assert_allclose(batch.predictions["output_0"], served, rtol=1e-6)      # predictions: serving's
    images = signatures["xai_preprocess"](bytes_inputs=tf.constant(pictures))["numpy_inputs"].numpy()
    for i, (image, (attribution,)) in enumerate(zip(images, batch.attributions)):
        picture = _dict(attribution.feature_attributions)["image"]
        assert list(picture) == ["b64_jpeg"]
        decoded = tf.io.decode_jpeg(base64.b64decode(picture["b64_jpeg"])).numpy()
        assert decoded.shape == (32, 32, 3)
        values = np.array(_dict(attribution.image_attributions)["image"])
        index = attribution.output_index[0]
        assert index == int(np.argmax(served[i]))                         # the argmax, as Vertex

        def output(points, index=index):
            return signatures["xai_model"](numpy_inputs=tf.cast(points, tf.float32))["output_0"][..., index]
        oracle = oracles.integrated_gradients_tf(output, image, np.zeros_like(image), steps=300)
        np.testing.assert_allclose(values, oracle, rtol=0.02, atol=2e-4 * np.abs(oracle).max())
        gap = attribution.instance_output_value - attribution.baseline_output_value
        assert abs(values.sum() - gap) <= 0.01 * abs(gap)


def test_the_image_notebook_without_metadata_answers_raw_values_and_xrai_answers_a_picture(notebook):
    path, pictures, _, _ = notebook
    plain = FeatureExplainer.load(path, _spec({"integratedGradientsAttribution": {"stepCount": 20}}))
    (attribution,) = plain.explain({"bytes_inputs": np.array(pictures[:1], dtype=object)})[0]
    assert np.array(_dict(attribution.feature_attributions)["numpy_inputs"]).shape == (32, 32, 3)
    xrai = FeatureExplainer.load(path, _spec({"xraiAttribution": {"stepCount": 20}}, IMAGE_METADATA))
    (attribution,) = xrai.explain({"bytes_inputs": np.array(pictures[:1], dtype=object)})[0]
    assert list(_dict(attribution.feature_attributions)["image"]) == ["b64_jpeg"]
    assert np.array(_dict(attribution.image_attributions)["image"]).shape == (32, 32, 3)
