"""Shared helpers for integration tests: oracles, payloads, status details."""
from __future__ import annotations

import json

import grpc
import numpy as np
from google.rpc import error_details_pb2, status_pb2

from tests import oracles


def brute_force(examples: np.ndarray, queries: np.ndarray, k: int, distance: str, unit_norm: bool = False):
    """(positions, distances) per query, nearest first: the shared oracle."""
    return oracles.nearest(examples, queries, k, distance, unit_norm)


def search_config(dimensions: int, distance: str, norm: str = "NONE", brute_force_index: bool = True,
                  leaf_count: int = 1000, leaf_percent: int = 10) -> dict:
    algorithm = {"bruteForceConfig": {}} if brute_force_index else {
        "treeAhConfig": {"leafNodeEmbeddingCount": leaf_count, "leafNodesToSearchPercent": leaf_percent}}
    return {"contentsDeltaUri": "", "config": {
        "dimensions": dimensions, "approximateNeighborsCount": 50, "distanceMeasureType": distance,
        "featureNormType": norm, "algorithmConfig": algorithm}}


def model_payload(artifact_uri: str, uris: list[str], config: dict | None = None, presets: dict | None = None,
                  latent: str = "", neighbor_count: int = 10) -> dict:
    examples = {"gcsSource": {"uris": uris}, "neighborCount": neighbor_count}
    if config is not None:
        examples["nearestNeighborSearchConfig"] = config
    if presets is not None:
        examples["presets"] = presets
    spec = {"parameters": {"examples": examples}}
    if latent:
        spec["metadata"] = {"latentSpaceSource": latent}
    return {"displayName": "test", "artifactUri": artifact_uri, "explanationSpec": spec}


def write_jsonl(path, records) -> str:
    with open(path, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    return str(path)


def bad_request_fields(error: grpc.RpcError) -> list[str]:
    """The field paths in the error's google.rpc.BadRequest details."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            return status_fields(status_pb2.Status.FromString(value))
    return []


def status_fields(status: status_pb2.Status) -> list[str]:
    """The field paths in a google.rpc.Status's BadRequest details (an operation's error, say)."""
    fields = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            fields += [v.field for v in bad.field_violations]
    return fields


def neighbor_ids(explanation) -> list[str]:
    return [n.neighbor_id for n in explanation.neighbors]


def neighbor_distances(explanation) -> list[float]:
    return [n.neighbor_distance for n in explanation.neighbors]


def wait_for_embedding(client, operation, timeout: float = 180):
    """Polls an upload until its build embeds (stage EMBEDDING, some examples done); its metadata."""
    import time

    from explaind.v1 import model_service_pb2

    meta = model_service_pb2.UploadModelOperationMetadata()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        client.get_operation(operation.name).metadata.Unpack(meta)
        if meta.stage == meta.Stage.EMBEDDING and meta.examples_embedded > 0:
            return meta
        time.sleep(0.1)
    raise AssertionError(f"the build never reached EMBEDDING: {meta}")
