"""Google's Explainable AI notebooks (vertex-ai-samples, notebooks/official/explainable_ai) as the
acceptance test: one test per notebook, making that notebook's google-cloud-aiplatform calls (the
high-level SDK, or the generated v1 / v1beta1 clients) with its arguments and payload shapes, and
reading each answer as the notebook reads it, on tiny models and synthetic data of the same schema.

Only what a migrating user changes differs from the notebooks: aiplatform.init's api_endpoint and
credentials (the gapic notebooks: client_options' api_endpoint, and the machine's default
credentials), and gs:// paths, which the daemon reads from a local folder (tests/local_gcs). The
notebooks' own training, plotting and cloud-storage commands are theirs, not calls to Vertex, and
are left out. One daemon serves all seven over TLS: the SDK notebooks alternate REST (https) and
gRPC, the gapic ones use gRPC as their clients do.

The notebooks' code is not copied here: each docstring names the notebook whose calls it makes.
"""
from __future__ import annotations

import base64
import json
import os
import shutil

import numpy as np
import pytest
from google.api_core import exceptions as google_exceptions
from google.auth.credentials import AnonymousCredentials
from google.protobuf import json_format
from google.protobuf.struct_pb2 import Value

from tests import attr_models, oracles
from tests.certs import default_roots_ca
from tests.integration.helpers import write_jsonl
from tests.local_gcs.storage_client import LocalStorageClient
from tests.server_process import ServerProcess, pick_free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

PROJECT, LOCATION = "my-project", "us-central1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
BUCKET_URI = "gs://nb-bucket"
DEPLOY_IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-11:latest"
DEPLOY_COMPUTE = "n1-standard-4"
BOSTON_FEATURES = ["crim", "zn", "indus", "chas", "nox", "rm", "age", "dis", "rad", "tax", "ptratio", "b", "lstat"]
LOCAL_GCS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "local_gcs")


# ------------------------------------------------------------------ the daemon and the bucket
@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """The folder that holds the buckets: gs://nb-bucket/x is {gcs}/nb-bucket/x."""
    root = tmp_path_factory.mktemp("gcs")
    (root / "nb-bucket").mkdir()
    return root


def local(gcs, uri: str) -> str:
    return os.path.join(str(gcs), uri[len("gs://"):])


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, gcs):
    """One daemon over TLS; its CA trusted as a migrating user's machine would (REQUESTS_CA_BUNDLE,
    GRPC_DEFAULT_SSL_ROOTS_FILE_PATH), and the machine's default credentials anonymous. Builds and
    batch jobs run in the daemon (--build-runner thread): the runners are tested elsewhere, and a
    child process per upload would import TensorFlow again, a minute of this module's time."""
    import google.auth
    base = tmp_path_factory.mktemp("daemon")
    ca, ca_file = default_roots_ca()
    cert, key = ca.server_files(base, "localhost")
    server = ServerProcess(str(base / "store"), str(base / "server.log"), cache_dir=str(base / "cache"),
                           env={"EXPLAIND_TEST_GCS_ROOT": str(gcs), "PYTHONPATH": LOCAL_GCS},
                           http_port=pick_free_port(), tls_cert_file=cert, tls_key_file=key,
                           store_poll_seconds=0.5, build_runner="thread").start()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REQUESTS_CA_BUNDLE", ca_file)
        patch.setenv("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", ca_file)
        patch.setattr(google.auth, "default", lambda *args, **kwargs: (AnonymousCredentials(), PROJECT))
        patch.setattr(LocalStorageClient, "root", str(gcs))
        yield server
    assert server.stop() == 0, server.log_tail()


def init_sdk(daemon, transport: str) -> None:
    """The notebooks' aiplatform.init, plus the two arguments a migrating user adds."""
    from google.cloud import aiplatform
    api_endpoint = f"https://localhost:{daemon.http_port}" if transport == "rest" else f"localhost:{daemon.port}"
    aiplatform.init(project=PROJECT, location=LOCATION, staging_bucket=BUCKET_URI, api_endpoint=api_endpoint,
                    credentials=AnonymousCredentials(), api_transport=transport)


def client_options(daemon) -> dict:
    """The gapic notebooks' client_options, naming the daemon instead of {region}-aiplatform.googleapis.com."""
    return {"api_endpoint": f"localhost:{daemon.port}"}


def serving_names(model_dir: str) -> tuple[str, str]:
    """The notebooks' first input and output of serving_default, read from the SavedModel."""
    import tensorflow as tf
    signature = tf.saved_model.load(model_dir).signatures["serving_default"]
    return list(signature.structured_input_signature[1].keys())[0], list(signature.structured_outputs.keys())[0]


# ------------------------------------------------------------------ the Boston housing notebooks' model
@pytest.fixture(scope="module")
def boston(gcs):
    """The tabular notebooks' regression model (13 numeric features -> 1 price), small, untrained
    (tanh, so the IG oracle's quadrature is tight), at gs://nb-bucket/model; test rows in [0, 1]."""
    k = attr_models.keras()
    k.utils.set_random_seed(11)
    model = k.Sequential([k.Input((13,), name="dense_input"), k.layers.Dense(16, activation="tanh"),
                          k.layers.Dense(16, activation="tanh"), k.layers.Dense(1)])
    model.export(local(gcs, f"{BUCKET_URI}/model"), verbose=False)
    x_test = np.random.default_rng(12).uniform(0.0, 1.0, size=(10, 13)).astype(np.float32)
    return {"model": model, "dir": f"{BUCKET_URI}/model", "x_test": x_test}


def boston_metadata(namespace, serving_input: str, serving_output: str):
    """The tabular notebooks' metadata: one BAG_OF_FEATURES input named by index_feature_mapping."""
    input_metadata = namespace.ExplanationMetadata.InputMetadata({
        "input_tensor_name": serving_input, "encoding": "BAG_OF_FEATURES", "modality": "numeric",
        "index_feature_mapping": BOSTON_FEATURES})
    output_metadata = namespace.ExplanationMetadata.OutputMetadata({"output_tensor_name": serving_output})
    return namespace.ExplanationMetadata(inputs={"features": input_metadata}, outputs={"medv": output_metadata})


def boston_ig(boston, row: np.ndarray) -> np.ndarray:
    """Integrated gradients from the all-zeros baseline (Vertex's default), by tf.GradientTape."""
    import tensorflow as tf
    return oracles.integrated_gradients_tf(lambda p: boston["model"](tf.cast(p, tf.float32))[:, 0], row,
                                           np.zeros_like(row))


def boston_output(boston, rows) -> np.ndarray:
    return np.asarray(boston["model"](np.asarray(rows, np.float32)))[:, 0]


def assert_boston_attributions(boston, row, by_name) -> None:
    """Every feature by its index_feature_mapping name, equal to the IG oracle (50 steps against 2000)."""
    got = np.array([by_name[name] for name in BOSTON_FEATURES])
    np.testing.assert_allclose(got, boston_ig(boston, row), rtol=0, atol=2e-3 * np.abs(got).sum() + 1e-6)


def sanity_check(boston, response, rows) -> None:
    """The tabular notebooks' sanity check reads each prediction (as `scores`, else as a list) beside
    its explanation's baseline_output_value: both as the model computes them."""
    zero = boston_output(boston, np.zeros((1, 13)))[0]
    assert len(response.explanations) == len(rows)
    for i, explanation in enumerate(response.explanations):
        try:
            prediction = np.max(response.predictions[i]["scores"])
        except TypeError:
            prediction = np.max(response.predictions[i])
        assert prediction == pytest.approx(boston_output(boston, rows[i:i + 1])[0], rel=1e-4, abs=1e-5)
        assert explanation.attributions[0].baseline_output_value == pytest.approx(zero, rel=1e-4, abs=1e-5)


def poll_jobs_often(monkeypatch) -> None:
    """The SDK looks at a batch job every 5 s; this module's tiny jobs end in seconds."""
    from google.cloud.aiplatform import jobs
    monkeypatch.setattr(jobs, "_JOB_WAIT_TIME", 0.5)


def expect_not_found(call) -> None:
    with pytest.raises(google_exceptions.NotFound):
        call()


# ------------------------------------------------------------------ 1. tabular, online
def test_tabular_regression_online_explain(daemon, gcs, boston):
    """sdk_custom_tabular_regression_online_explain.ipynb, over REST: Model.upload (sync=False,
    wait) with integrated gradients and the BAG_OF_FEATURES metadata, model.deploy (a new endpoint,
    traffic_split {"0": 100}), endpoint.explain, its prediction read as prediction[0][0][0] and its
    attributions by feature name, ten rows' sanity check, undeploy_all, delete, delete."""
    from google.cloud import aiplatform
    init_sdk(daemon, "rest")
    serving_input, serving_output = serving_names(local(gcs, boston["dir"]))
    parameters = aiplatform.explain.ExplanationParameters({"integrated_gradients_attribution": {"step_count": 50}})
    metadata = boston_metadata(aiplatform.explain, serving_input, serving_output)
    model = aiplatform.Model.upload(display_name="boston", artifact_uri=boston["dir"],
                                    serving_container_image_uri=DEPLOY_IMAGE, explanation_parameters=parameters,
                                    explanation_metadata=metadata, sync=False)
    model.wait()
    endpoint = model.deploy(deployed_model_display_name="boston", traffic_split={"0": 100},
                            machine_type=DEPLOY_COMPUTE, accelerator_type=None, accelerator_count=0,
                            min_replica_count=1, max_replica_count=1)

    test_item = boston["x_test"][0]
    prediction = endpoint.explain([test_item.tolist()])
    value = prediction[0][0][0]
    assert value == pytest.approx(boston_output(boston, [test_item])[0], rel=1e-4, abs=1e-5)
    attributions = prediction.explanations[0].attributions[0].feature_attributions
    rows = [[name, test_item[i], attributions[name]] for i, name in enumerate(BOSTON_FEATURES)]
    assert_boston_attributions(boston, test_item, {name: attribution for name, _, attribution in rows})

    instances = [boston["x_test"][i].tolist() for i in range(10)]
    sanity_check(boston, endpoint.explain(instances), boston["x_test"])

    endpoint.undeploy_all()
    endpoint.delete()
    model.delete()
    expect_not_found(lambda: aiplatform.Model(model.resource_name))
    expect_not_found(lambda: aiplatform.Endpoint(endpoint.resource_name).list_models())


# ------------------------------------------------------------------ 2. tabular, batch
def test_tabular_regression_batch_explain(daemon, gcs, boston, monkeypatch):
    """sdk_custom_tabular_regression_batch_explain.ipynb, over gRPC: Model.upload (sync=False,
    wait), a CSV of two rows under the notebook's header, model.batch_predict (csv in, jsonl out,
    generate_explanation, sync=False), wait, iter_outputs, every explanation line, model.delete,
    batch_predict_job.delete. Needs Vertex's JobService (issue 20)."""
    from google.cloud import aiplatform, storage
    init_sdk(daemon, "grpc")
    poll_jobs_often(monkeypatch)
    serving_input, serving_output = serving_names(local(gcs, boston["dir"]))
    parameters = aiplatform.explain.ExplanationParameters({"integrated_gradients_attribution": {"step_count": 50}})
    model = aiplatform.Model.upload(display_name="boston", artifact_uri=boston["dir"],
                                    serving_container_image_uri=DEPLOY_IMAGE, explanation_parameters=parameters,
                                    explanation_metadata=boston_metadata(aiplatform.explain, serving_input,
                                                                         serving_output), sync=False)
    model.wait()

    x_test = boston["x_test"]
    gcs_input_uri = BUCKET_URI + "/test.csv"
    with open(local(gcs, gcs_input_uri), "w") as f:          # the notebook writes batch.csv, then copies it
        f.write("crim, zn, indus, chas, nox, rm, age, dis, rad, tax, ptratio, b, lstat\n")
        for row in x_test[:2]:
            f.write(str(row.tolist()).replace("[", "").replace("]", "") + "\n")
    batch_predict_job = model.batch_predict(
        job_display_name="boston", gcs_source=gcs_input_uri, gcs_destination_prefix=BUCKET_URI,
        instances_format="csv", predictions_format="jsonl", machine_type=DEPLOY_COMPUTE,
        starting_replica_count=1, max_replica_count=1, generate_explanation=True, sync=False)
    batch_predict_job.wait()

    monkeypatch.setattr(storage, "Client", LocalStorageClient)
    bp_iter_outputs = batch_predict_job.iter_outputs()
    explanation_results = [blob.name for blob in bp_iter_outputs if blob.name.split("/")[-1].startswith("explanation")]
    lines = []
    for explanation_result in explanation_results:
        with open(local(gcs, f"gs://{bp_iter_outputs.bucket.name}/{explanation_result}")) as gfile:
            lines += gfile.readlines()
    results = sorted((json.loads(line) for line in lines), key=lambda r: r["instance"][0])
    assert len(results) == 2
    for result, row in zip(results, sorted(x_test[:2], key=lambda r: r[0])):
        np.testing.assert_allclose(result["instance"], row, rtol=1e-6)
        assert result["prediction"][0] == pytest.approx(boston_output(boston, [row])[0], rel=1e-4, abs=1e-5)
        assert_boston_attributions(boston, row, result["explanation"]["attributions"][0]["featureAttributions"])

    model.delete()
    batch_predict_job.delete()
    expect_not_found(lambda: aiplatform.Model(model.resource_name))


# ------------------------------------------------------------------ 3. image, integrated gradients
@pytest.fixture(scope="module")
def image_model(gcs):
    """The image notebook's export (serving_default on JPEG bytes, xai_preprocess, xai_model), small."""
    uri = f"{BUCKET_URI}/image_model"
    shutil.copytree(attr_models.image_notebook_model(), local(gcs, uri))
    return uri


def image_oracle(model_dir: str, jpeg: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(the class scores serving_default gives, IG of the top class over xai_model's input from a
    black picture) for one JPEG."""
    import tensorflow as tf
    loaded = tf.saved_model.load(model_dir)
    scores = list(loaded.signatures["serving_default"](tf.constant([jpeg])).values())[0].numpy()[0]
    image = loaded.signatures["xai_preprocess"](tf.constant([jpeg]))["numpy_inputs"].numpy()[0]
    top = int(np.argmax(scores))
    xai_model = loaded.signatures["xai_model"]
    ig = oracles.integrated_gradients_tf(
        lambda p: list(xai_model(numpy_inputs=tf.cast(p, tf.float32)).values())[0][:, top], image, np.zeros_like(image))
    return scores, ig


def test_image_classification_feature_attributions(daemon, gcs, image_model, monkeypatch):
    """xai_image_classification_feature_attributions.ipynb, over REST: Model.upload with integrated
    gradients and no metadata (the xai_preprocess / xai_model signatures say it), model.deploy,
    endpoint.explain of {bytes_inputs: {b64}} pictures, each prediction and its "numpy_inputs"
    attributions read through json.loads(str(...)); a batch_predict of the same pictures as JSONL,
    the first explanation.results record; undeploy_all, delete, delete, batch_predict_job.delete.
    The batch step needs Vertex's JobService (issue 20)."""
    from google.cloud import aiplatform, storage
    init_sdk(daemon, "rest")
    poll_jobs_often(monkeypatch)
    model_dir = local(gcs, image_model)
    serving_input = serving_names(model_dir)[0]
    parameters = aiplatform.explain.ExplanationParameters({"integrated_gradients_attribution": {"step_count": 50}})
    model = aiplatform.Model.upload(display_name="inception-v3-model-unique", artifact_uri=image_model,
                                    serving_container_image_uri=DEPLOY_IMAGE, explanation_parameters=parameters)
    endpoint = model.deploy(deployed_model_display_name="inception-v3-deploy-unique", machine_type=DEPLOY_COMPUTE,
                            accelerator_type=None, accelerator_count=0)

    pictures = attr_models.jpeg_images(2, seed=21)
    instances_list = [{serving_input: {"b64": base64.b64encode(p).decode("utf-8")}} for p in pictures]
    response = endpoint.explain(instances_list)
    for i, picture in enumerate(pictures):
        prediction = response.predictions[i]
        feature_attributions = dict(response.explanations[i].attributions[0].feature_attributions)
        label_index = np.argmax(prediction)
        attribution_image = np.array(json.loads(str(feature_attributions["numpy_inputs"])))
        scores, ig = image_oracle(model_dir, picture)
        np.testing.assert_allclose(prediction, scores, rtol=1e-4, atol=1e-6)
        assert label_index == np.argmax(scores)
        assert list(response.explanations[i].attributions[0].output_index) == [label_index]
        assert attribution_image.shape == ig.shape and attribution_image.max(axis=2).shape == ig.shape[:2]
        np.testing.assert_allclose(attribution_image, ig, rtol=0, atol=0.02 * np.abs(ig).max())

    gcs_input_uri = f"{BUCKET_URI}/test_images.json"
    write_jsonl(local(gcs, gcs_input_uri), instances_list)
    batch_predict_job = model.batch_predict(
        job_display_name="inception-v3-job-unique", gcs_source=gcs_input_uri, gcs_destination_prefix=BUCKET_URI,
        instances_format="jsonl", model_parameters=None, machine_type=DEPLOY_COMPUTE, generate_explanation=True)
    monkeypatch.setattr(storage, "Client", LocalStorageClient)
    bp_iter_outputs = batch_predict_job.iter_outputs()
    explanation_results = [blob.name for blob in bp_iter_outputs
                           if blob.name.split("/")[-1].startswith("explanation.results")]
    with open(local(gcs, f"{BUCKET_URI}/{explanation_results[0]}")) as gfile:
        # The notebook parses the first file whole, as one record: what it holds where the file has one line.
        result = json.loads(gfile.readline())
    encoded_image = result["instance"]["bytes_inputs"]["b64"]
    assert encoded_image == instances_list[0][serving_input]["b64"]
    np.testing.assert_allclose(result["prediction"], response.predictions[0], rtol=1e-5, atol=1e-7)
    feature_attributions = result["explanation"]["attributions"][0]["featureAttributions"]
    np.testing.assert_allclose(np.array(feature_attributions["numpy_inputs"]),
                               np.array(json.loads(str(dict(response.explanations[0].attributions[0]
                                                             .feature_attributions)["numpy_inputs"]))),
                               rtol=1e-5, atol=1e-7)

    endpoint.undeploy_all()
    endpoint.delete()
    model.delete()
    batch_predict_job.delete()


# ------------------------------------------------------------------ 4. text, sampled Shapley
def test_text_classification_feature_attributions(daemon, gcs):
    """xai_text_classification_feature_attributions.ipynb, over gRPC: an Embedding -> LSTM ->
    sigmoid classifier of token ids, Model.upload with sampled Shapley (path_count 10) and an
    IDENTITY input "my_input", model.deploy, endpoint.explain of one bare token list, the
    prediction as result.predictions[0][0] and the per-token attributions as
    feature_attributions["my_input"], undeploy_all, delete, delete."""
    from google.cloud import aiplatform
    init_sdk(daemon, "grpc")
    path, after_embedding, embedding = attr_models.recurrent_text_classifier()
    model_dir = f"{BUCKET_URI}/text_model"
    shutil.copytree(path, local(gcs, model_dir))
    serving_input, serving_output = serving_names(local(gcs, model_dir))
    parameters = aiplatform.explain.ExplanationParameters({"sampled_shapley_attribution": {"path_count": 10}})
    metadata = aiplatform.explain.ExplanationMetadata(
        inputs={"my_input": aiplatform.explain.ExplanationMetadata.InputMetadata({
            "input_tensor_name": serving_input,
            "encoding": aiplatform.explain.ExplanationMetadata.InputMetadata.Encoding(1)})},
        outputs={"my_output": aiplatform.explain.ExplanationMetadata.OutputMetadata(
            {"output_tensor_name": serving_output})})
    uploaded_model = aiplatform.Model.upload(display_name="tf_text_model_unique", artifact_uri=model_dir,
                                             serving_container_image_uri=DEPLOY_IMAGE,
                                             explanation_parameters=parameters, explanation_metadata=metadata)
    endpoint = uploaded_model.deploy(deployed_model_display_name="tf_text_model_deploy_unique",
                                     machine_type=DEPLOY_COMPUTE, accelerator_type=None, accelerator_count=0)

    x_test, _ = attr_models.text_data(count=8, seed=21)      # x_test[2] has padding (0) tokens
    example = x_test[2].tolist()
    result = endpoint.explain([example])
    prediction = result.predictions[0][0]
    attribution = result.explanations[0].attributions[0]
    attributions = attribution.feature_attributions["my_input"]

    expected = float(after_embedding(embedding[np.array([example])])[0, 0])
    assert prediction == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert len(attributions) == len(example)
    # Shapley's efficiency holds path by path; a token equal to the baseline's (0) adds nothing.
    assert sum(attributions) == pytest.approx(attribution.instance_output_value - attribution.baseline_output_value,
                                              abs=1e-5)
    assert [a for a, token in zip(attributions, example) if token == 0] == [0.0] * example.count(0)
    assert 0 in example and any(abs(a) > 0 for a in attributions)

    endpoint.undeploy_all()
    endpoint.delete()
    uploaded_model.delete()


# ------------------------------------------------------------------ 5, 6. example-based, v1beta1 clients
def beta_clients(daemon) -> dict:
    """The example-based notebooks' clients: v1beta1, built from client_options alone."""
    from google.cloud import aiplatform_v1beta1 as vertex_ai_v1beta1
    return {"model": vertex_ai_v1beta1.ModelServiceClient(client_options=client_options(daemon)),
            "endpoint": vertex_ai_v1beta1.EndpointServiceClient(client_options=client_options(daemon)),
            "prediction": vertex_ai_v1beta1.PredictionServiceClient(client_options=client_options(daemon))}


def upload_and_deploy(clients, model_config: dict, endpoint_config: dict, deployed_name: str):
    """The example-based notebooks' upload_model, create_endpoint and deploy_model helpers' calls:
    (the upload's response, the endpoint, the deploy's response)."""
    from google.cloud import aiplatform_v1beta1 as vertex_ai_v1beta1
    model = vertex_ai_v1beta1.Model(display_name=model_config["display_name"],
                                    artifact_uri=model_config["artifact_uri"], metadata_schema_uri="",
                                    explanation_spec=model_config["explanation_spec"],
                                    container_spec=model_config["container_spec"])
    uploaded_model = clients["model"].upload_model(parent=PARENT, model=model).result(timeout=300)
    endpoint = clients["endpoint"].create_endpoint(parent=PARENT, endpoint=endpoint_config).result()
    deployed_model = {"model": uploaded_model.model, "display_name": deployed_name, "dedicated_resources": {
        "min_replica_count": 1, "max_replica_count": 1, "machine_spec": {"machine_type": DEPLOY_COMPUTE}},
        "enable_container_logging": False}
    deployed = clients["endpoint"].deploy_model(endpoint=endpoint.name, deployed_model=deployed_model,
                                                traffic_split={"0": 100}).result(timeout=300)
    return uploaded_model, endpoint, deployed


def explain_in_batches(clients, val_data: list, endpoint_id: str, deployed_model_id: str, size: int = 8) -> list:
    """The notebooks' loop: instances as Values, parameters None, the explanations read through
    json_format.MessageToDict(response._pb)."""
    all_neighbors = []
    for start in range(0, len(val_data), size):
        instances = [json_format.ParseDict(instance, Value()) for instance in val_data[start:start + size]]
        response = clients["prediction"].explain(endpoint=endpoint_id, instances=instances, parameters=None,
                                                 deployed_model_id=deployed_model_id)
        assert response.deployed_model_id == deployed_model_id
        all_neighbors += json_format.MessageToDict(response._pb)["explanations"]
    return all_neighbors


def example_metadata(vertex_ai_v1beta1, tensor: str, modality: str | None):
    """An IDENTITY input "my_input", an IDENTITY "id", the embedding named in outputs."""
    my_input = {"input_tensor_name": tensor, "encoding": vertex_ai_v1beta1.ExplanationMetadata.InputMetadata.Encoding(1)}
    if modality:
        my_input["modality"] = modality
    return vertex_ai_v1beta1.ExplanationMetadata(
        inputs={"my_input": vertex_ai_v1beta1.ExplanationMetadata.InputMetadata(my_input),
                "id": vertex_ai_v1beta1.ExplanationMetadata.InputMetadata(
                    {"input_tensor_name": "id", "encoding": vertex_ai_v1beta1.ExplanationMetadata.InputMetadata.Encoding(1)})},
        outputs={"embedding": vertex_ai_v1beta1.ExplanationMetadata.OutputMetadata({"output_tensor_name": "embedding"})})


def assert_neighbors(all_neighbors: list, examples: np.ndarray, queries: np.ndarray, k: int, distance: str) -> None:
    """Each query's neighbors, read as the notebooks read them (int(neighborId), neighborDistance),
    against numpy's brute force over the same embeddings."""
    positions, distances = oracles.nearest(examples, queries, k, distance)
    assert len(all_neighbors) == len(queries)
    for explanation, expected_ids, expected_distances in zip(all_neighbors, positions, distances):
        neighbor_list = explanation["neighbors"]
        assert [int(n["neighborId"]) for n in neighbor_list] == list(expected_ids)
        np.testing.assert_allclose([n["neighborDistance"] for n in neighbor_list], expected_distances,
                                   rtol=1e-4, atol=1e-6)


IMAGE_SIDE = 16


def beans_embedding_model(path: str) -> None:
    """The image notebook's export: serving_fn(id, bytes_inputs) -> {"id", "embedding"}, pictures
    decoded by decode_jpeg (which reads the notebook's PNGs too), resized, embedded (a fixed random
    projection, tanh): a tiny stand-in for its MobileNet without the classifier."""
    import tensorflow as tf
    module = tf.Module()
    module.w = tf.Variable(np.random.default_rng(31).normal(size=(IMAGE_SIDE * IMAGE_SIDE * 3, 8)).astype(np.float32) / 20)

    def _preprocess(bytes_input):
        decoded = tf.image.convert_image_dtype(tf.io.decode_jpeg(bytes_input, channels=3), tf.float32)
        return tf.image.resize(decoded, size=(IMAGE_SIDE, IMAGE_SIDE))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.string)])
    def serving_fn(id, bytes_inputs):
        images = tf.nest.map_structure(tf.stop_gradient, tf.map_fn(_preprocess, bytes_inputs, dtype=tf.float32))
        flat = tf.reshape(images, [-1, IMAGE_SIDE * IMAGE_SIDE * 3])
        return {"id": id, "embedding": tf.tanh(tf.matmul(flat, module.w))}

    tf.saved_model.save(module, path, signatures={"serving_default": serving_fn})


def beans_pictures(count: int, seed: int) -> list[bytes]:
    """PNG pictures of three kinds of leaf (a colour and a pattern each), as the notebook's get_instance encodes them."""
    import tensorflow as tf
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:IMAGE_SIDE, 0:IMAGE_SIDE]
    pictures = []
    for i in range(count):
        kind = i % 3
        base = np.array([[60, 140, 40], [150, 90, 30], [40, 170, 60]][kind], float)
        spots = np.sin(xx / (2 + kind) + rng.uniform(0, 6)) > 0.3
        image = (base + 60 * spots[..., None] + rng.normal(scale=8, size=(IMAGE_SIDE, IMAGE_SIDE, 3))).clip(0, 255)
        pictures.append(tf.io.encode_png(image.astype(np.uint8)).numpy())
    return pictures


def embeddings(model_dir: str, **inputs) -> np.ndarray:
    """The oracle's embeddings: the SavedModel's own signature, run here."""
    import tensorflow as tf
    signature = tf.saved_model.load(model_dir).signatures["serving_default"]
    return signature(**{k: tf.constant(v) for k, v in inputs.items()})["embedding"].numpy()


def test_image_classification_example_based_explanations(daemon, gcs):
    """xai_image_classification_example_based_explanations.ipynb, v1beta1 generated clients over
    gRPC: an (id, bytes_inputs) -> {id, embedding} export, the training pictures as JSONL of
    {id, bytes_inputs: {b64}}, Examples with a treeAhConfig nearest_neighbor_search_config and
    gcs_source, IDENTITY metadata with the embedding named in outputs, upload_model, create_endpoint
    (description, labels), deploy_model (traffic_split {"0": 100}), explain in batches of 8 with
    parameters None, each neighbor read as int(neighborId) and neighborDistance."""
    from google.cloud import aiplatform_v1beta1 as vertex_ai_v1beta1
    from google.cloud.aiplatform_v1beta1.types import io as io_pb2
    clients = beta_clients(daemon)
    embeddings_uri = f"{BUCKET_URI}/model/mobilenetv2-beans"
    beans_embedding_model(local(gcs, embeddings_uri))
    train_images, val_images = beans_pictures(24, seed=32), beans_pictures(16, seed=33)
    train_dataset_uri = f"{BUCKET_URI}/data/beanstrain-images.jsonl"
    os.makedirs(os.path.dirname(local(gcs, train_dataset_uri)))
    write_jsonl(local(gcs, train_dataset_uri), [image_instance(i, p) for i, p in enumerate(train_images)])

    num_neighbors_to_return = 10
    nearest_neighbor_search_config = {"contentsDeltaUri": "", "config": {
        "dimensions": 8, "approximateNeighborsCount": num_neighbors_to_return,
        "distanceMeasureType": "SQUARED_L2_DISTANCE", "featureNormType": "NONE",
        "algorithmConfig": {"treeAhConfig": {"leafNodeEmbeddingCount": 1000, "leafNodesToSearchPercent": 100}}}}
    examples = vertex_ai_v1beta1.Examples(nearest_neighbor_search_config=nearest_neighbor_search_config,
                                          gcs_source=io_pb2.GcsSource(uris=[train_dataset_uri]),
                                          neighbor_count=num_neighbors_to_return)
    explanation_spec = vertex_ai_v1beta1.ExplanationSpec(
        parameters=vertex_ai_v1beta1.ExplanationParameters(examples=examples),
        metadata=example_metadata(vertex_ai_v1beta1, "bytes_inputs", "image"))
    container_spec = vertex_ai_v1beta1.ModelContainerSpec({"image_uri": "gcr.io/cloud-aiplatform/prediction/tf2-cpu.2-11:latest"})
    model_config = {"display_name": "mobilenetv2-beans-similarity", "artifact_uri": embeddings_uri,
                    "explanation_spec": explanation_spec, "container_spec": container_spec}
    endpoint_config = {"display_name": "mobilenetv2-beans-similarity-similarity-endpoint",
                       "description": "An endpoint for the similarity model", "labels": {"env": "prod", "status": "online"}}
    uploaded_model, endpoint, deployed_model = upload_and_deploy(clients, model_config, endpoint_config,
                                                                 "mobilenetv2-beans-similarity-deployed")
    assert uploaded_model.model.startswith(f"{PARENT}/models/")
    assert (endpoint.description, dict(endpoint.labels)) == (endpoint_config["description"], endpoint_config["labels"])

    val_data = [image_instance(i, p) for i, p in enumerate(val_images)]
    all_neighbors = explain_in_batches(clients, val_data, endpoint.name, deployed_model.deployed_model.id)
    assert_neighbors(all_neighbors, embeddings(local(gcs, embeddings_uri), id=[b""] * len(train_images),
                                               bytes_inputs=train_images),
                     embeddings(local(gcs, embeddings_uri), id=[b""] * len(val_images), bytes_inputs=val_images),
                     num_neighbors_to_return, "SQUARED_L2_DISTANCE")


def image_instance(index: int, png: bytes) -> dict:
    return {"id": str(index), "bytes_inputs": {"b64": base64.b64encode(png).decode("utf-8")}}


NEWS = {"World": "minister election government war talks president leaders country peace treaty",
        "Sports": "game team season coach win cup match players league score",
        "Business": "stocks market shares profit company oil prices bank sales economy",
        "Sci/Tech": "software computer internet space research microsoft users phone web scientists"}


def news_texts(count: int, seed: int) -> list[str]:
    """Short headlines of the four ag_news topics, words drawn from each topic's own."""
    rng = np.random.default_rng(seed)
    topics = list(NEWS.values())
    return [" ".join(rng.choice(topics[i % 4].split(), size=int(rng.integers(5, 12)))) for i in range(count)]


def news_embedding_model(path: str) -> None:
    """The text notebook's export: serving_fn(id, input_text) -> {"id", "embedding"}; the embedding
    a hashed bag of words through a fixed random projection (a tiny stand-in for its NNLM)."""
    import tensorflow as tf
    module = tf.Module()
    module.w = tf.Variable(np.random.default_rng(34).normal(size=(64, 12)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string), tf.TensorSpec(shape=[None], dtype=tf.string)])
    def serving_fn(id, input_text):
        words = tf.strings.split(tf.strings.lower(input_text))
        bag = tf.reduce_sum(tf.ragged.map_flat_values(tf.one_hot, tf.strings.to_hash_bucket_fast(words, 64), 64), axis=1)
        return {"id": id, "embedding": tf.tanh(tf.matmul(bag, module.w) / 4)}

    tf.saved_model.save(module, path, signatures={"serving_default": serving_fn})


def test_text_classification_example_based_explanations(daemon, gcs):
    """xai_text_classification_example_based_explanations.ipynb, v1beta1 generated clients over
    gRPC: an (id, input_text) -> {id, embedding} export, the training texts as JSONL of
    {id, input_text}, Examples with presets {TEXT, FAST} and gcs_source, IDENTITY metadata,
    upload_model, create_endpoint, deploy_model, explain in batches of 8, each neighbor read as
    int(neighborId); then its clean-up: undeploy_model (traffic_split {}) and delete_endpoint,
    the second sent without waiting for the first."""
    from google.cloud import aiplatform_v1beta1 as vertex_ai_v1beta1
    from google.cloud.aiplatform_v1beta1.types import io as io_pb2
    clients = beta_clients(daemon)
    embeddings_uri = f"{BUCKET_URI}/model/nnlm-en-dim50-ag_news_subset"
    news_embedding_model(local(gcs, embeddings_uri))
    train_examples, val_examples = news_texts(40, seed=35), news_texts(16, seed=36)
    train_dataset_uri = f"{BUCKET_URI}/data/ag_news_subset-train-images.jsonl"
    os.makedirs(os.path.dirname(local(gcs, train_dataset_uri)), exist_ok=True)
    write_jsonl(local(gcs, train_dataset_uri), [{"id": str(i), "input_text": t} for i, t in enumerate(train_examples)])

    examples = vertex_ai_v1beta1.Examples(presets={"modality": "TEXT", "query": "FAST"},
                                          gcs_source=io_pb2.GcsSource(uris=[train_dataset_uri]), neighbor_count=10)
    explanation_spec = vertex_ai_v1beta1.ExplanationSpec(
        parameters=vertex_ai_v1beta1.ExplanationParameters(examples=examples),
        metadata=example_metadata(vertex_ai_v1beta1, "input_text", None))
    container_spec = vertex_ai_v1beta1.ModelContainerSpec({"image_uri": "gcr.io/cloud-aiplatform/prediction/tf2-cpu.2-11:latest"})
    model_config = {"display_name": "nnlm-en-dim50-ag_news_subset-similarity", "artifact_uri": embeddings_uri,
                    "explanation_spec": explanation_spec, "container_spec": container_spec}
    endpoint_config = {"display_name": "nnlm-en-dim50-ag_news_subset-similarity-endpoint",
                       "description": "An endpoint for the similarity model", "labels": {"env": "prod", "status": "online"}}
    _, endpoint, deployed_model = upload_and_deploy(clients, model_config, endpoint_config,
                                                    "nnlm-en-dim50-ag_news_subset-similarity-deployed")
    deployed_model_id = deployed_model.deployed_model.id
    val_data = [{"id": str(i), "input_text": t} for i, t in enumerate(val_examples)]
    all_neighbors = explain_in_batches(clients, val_data, endpoint.name, deployed_model_id)
    model_dir = local(gcs, embeddings_uri)
    assert_neighbors(all_neighbors, embeddings(model_dir, id=[""] * 40, input_text=train_examples),
                     embeddings(model_dir, id=[""] * 16, input_text=val_examples), 10,
                     "COSINE_DISTANCE")       # the TEXT preset's distance

    undeploy = clients["endpoint"].undeploy_model(endpoint=endpoint.name, deployed_model_id=deployed_model_id,
                                                   traffic_split={})
    delete = clients["endpoint"].delete_endpoint(name=endpoint.name)
    undeploy.result(timeout=60)
    delete.result(timeout=60)
    expect_not_found(lambda: clients["endpoint"].get_endpoint(name=endpoint.name))


# ------------------------------------------------------------------ 7. tabular, v1 clients
def test_gapic_custom_tabular_regression_online_explain(daemon, gcs, boston):
    """gapic-custom_tabular_regression_online_explain.ipynb (retired from vertex-ai-samples in 2022),
    v1 generated clients over gRPC from client_options: upload_model with an ExplanationSpec of
    integrated gradients and the BAG_OF_FEATURES metadata (result(timeout=180).model), get_model,
    create_endpoint, deploy_model (dedicated resources, disable_container_logging), explain with
    parameters ParseDict(None) and deployed_model_id None of {serving_input: row} instances, the
    prediction as predictions[0][0] and attributions by feature name, ten rows' sanity check,
    undeploy_model (traffic_split {}), delete_model, delete_endpoint."""
    import google.cloud.aiplatform_v1 as aip
    clients = {"model": aip.ModelServiceClient(client_options=client_options(daemon)),
               "endpoint": aip.EndpointServiceClient(client_options=client_options(daemon)),
               "prediction": aip.PredictionServiceClient(client_options=client_options(daemon))}
    serving_input, serving_output = serving_names(local(gcs, boston["dir"]))
    parameters = aip.ExplanationParameters({"integrated_gradients_attribution": {"step_count": 50}})
    explanation_spec = aip.ExplanationSpec(metadata=boston_metadata(aip, serving_input, serving_output),
                                           parameters=parameters)
    model = aip.Model(display_name="boston-20220101000000", artifact_uri=boston["dir"], metadata_schema_uri="",
                      explanation_spec=explanation_spec,
                      container_spec={"image_uri": "gcr.io/cloud-aiplatform/prediction/tf2-cpu.2-1:latest"})
    response = clients["model"].upload_model(parent=PARENT, model=model)
    model_to_deploy_id = response.result(timeout=180).model
    got = clients["model"].get_model(name=model_to_deploy_id)
    assert got.explanation_spec == explanation_spec and got.artifact_uri == boston["dir"]

    result = clients["endpoint"].create_endpoint(
        parent=PARENT, endpoint={"display_name": "boston_endpoint-20220101000000"}).result(timeout=300)
    assert (result.display_name, result.description, dict(result.labels)) == ("boston_endpoint-20220101000000", "", {})
    assert result.create_time and result.update_time
    endpoint_id = result.name
    deployed_model = {"model": model_to_deploy_id, "display_name": "boston_deployed-20220101000000",
                      "dedicated_resources": {"min_replica_count": 1, "max_replica_count": 1,
                                              "machine_spec": {"machine_type": DEPLOY_COMPUTE, "accelerator_count": 0}},
                      "disable_container_logging": True}
    deployed = clients["endpoint"].deploy_model(endpoint=endpoint_id, deployed_model=deployed_model,
                                                traffic_split={"0": 100}).result().deployed_model
    assert deployed.model == model_to_deploy_id and deployed.display_name == "boston_deployed-20220101000000"
    assert deployed.id and deployed.create_time

    def explain_data(data_items):
        instances = [json_format.ParseDict({serving_input: s.tolist()}, Value()) for s in data_items]
        return clients["prediction"].explain(endpoint=endpoint_id, instances=instances,
                                             parameters=json_format.ParseDict(None, Value()), deployed_model_id=None)

    test_item = boston["x_test"][0]
    response = explain_data([test_item])
    assert response.deployed_model_id == deployed.id
    assert response.predictions[0][0] == pytest.approx(boston_output(boston, [test_item])[0], rel=1e-4, abs=1e-5)
    attributions = response.explanations[0].attributions[0].feature_attributions
    assert_boston_attributions(boston, test_item, {name: attributions[name] for name in BOSTON_FEATURES})
    sanity_check(boston, explain_data(list(boston["x_test"])), boston["x_test"])

    clients["endpoint"].undeploy_model(endpoint=endpoint_id, deployed_model_id=deployed.id, traffic_split={}).result()
    clients["model"].delete_model(name=model_to_deploy_id).result()
    clients["endpoint"].delete_endpoint(name=endpoint_id).result()
    expect_not_found(lambda: clients["model"].get_model(name=model_to_deploy_id))
    expect_not_found(lambda: clients["endpoint"].get_endpoint(name=endpoint_id))
