"""The explaind Python SDK: a client for the daemon and explanation-metadata builders."""
from .client import Client, OperationError, batch_metadata, upload_metadata
from .payloads import PayloadError

__all__ = ["Client", "OperationError", "PayloadError", "batch_metadata", "upload_metadata"]
