"""A daemon on a host without TensorFlow (a GPU node that has FAISS only) serves
index-only models, and says plainly that it cannot take a SavedModel."""
from __future__ import annotations

import grpc
import numpy as np
import pytest

from tests import models as tfmodels
from tests import oracles
from tests.integration.helpers import bad_request_fields, model_payload, search_config

# Loaded by the daemon's interpreter at start: any `import tensorflow` (or keras) then fails.
BLOCK_TENSORFLOW = 'import sys\nfor name in ("tensorflow", "keras", "tf_keras"):\n    sys.modules[name] = None\n'


@pytest.fixture
def no_tensorflow_server(start_server, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCK_TENSORFLOW)
    return start_server(env={"PYTHONPATH": str(site)})


def test_index_only_models_are_served_without_tensorflow(no_tensorflow_server, tmp_path):
    rng = np.random.default_rng(11)
    vectors = rng.normal(size=(2000, 12)).astype(np.float32)
    np.save(tmp_path / "e.npy", vectors)
    queries = rng.normal(size=(3, 12)).astype(np.float32)
    with no_tensorflow_server.client() as client:
        client.wait(client.upload_model(model_payload("", [str(tmp_path / "e.npy")],
                                                      search_config(12, "SQUARED_L2_DISTANCE")), model_id="plain"),
                    timeout=120)
        response = client.explain("plain", [q.tolist() for q in queries], embeddings=True, neighbor_count=5)
    order, dist = oracles.nearest(vectors, queries, 5, "SQUARED_L2_DISTANCE")
    for explanation, want, want_d in zip(response.explanations, order, dist):
        assert [n.neighbor_id for n in explanation.neighbors] == [str(p) for p in want]
        np.testing.assert_allclose([n.neighbor_distance for n in explanation.neighbors], want_d, rtol=1e-4)


def test_a_savedmodel_upload_is_failed_precondition_naming_tensorflow(no_tensorflow_server, tmp_path):
    path = tfmodels.tabular_embedding_model(str(tmp_path / "model"))     # made here, where TensorFlow is
    np.save(tmp_path / "e.npy", np.zeros((10, 16), np.float32))
    with no_tensorflow_server.client() as client, pytest.raises(grpc.RpcError) as err:
        client.upload_model(model_payload(path, [str(tmp_path / "e.npy")], search_config(16, "DOT_PRODUCT_DISTANCE"),
                                          latent="embedding"), model_id="needs-tf")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "TensorFlow is not installed" in err.value.details()
    assert bad_request_fields(err.value) == ["model.artifact_uri"]
    with no_tensorflow_server.client() as client:
        assert [m.name for m in client.list_models()] == []             # nothing claimed, nothing half-made
