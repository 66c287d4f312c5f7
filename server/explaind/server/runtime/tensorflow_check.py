"""Whether this process can run SavedModels at all.

Index-only models (every example carries its embedding) are served without
TensorFlow: a GPU node may have FAISS and no TensorFlow. Uploading or loading
a SavedModel there must say so plainly instead of failing deep in an import.
"""
from __future__ import annotations

import importlib.util

from ..errors import FailedPrecondition


def tensorflow_available() -> bool:
    try:
        return importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):
        return False


def require_tensorflow(field: str) -> None:
    if not tensorflow_available():
        raise FailedPrecondition(
            "TensorFlow is not installed on this server, so it cannot run a SavedModel; install "
            "explaind[server] (or explaind[gpu]), or upload an index-only model whose examples carry "
            "their embeddings (empty artifact_uri)", field=field)
