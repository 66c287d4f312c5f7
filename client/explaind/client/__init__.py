"""The explaind Python SDK: a client for the daemon and explanation-metadata builders."""
from .client import Client, OperationError, upload_metadata

__all__ = ["Client", "OperationError", "upload_metadata"]
