"""The explaind Python SDK: a client for the daemon and explanation-metadata builders."""
from .client import Client, OperationError, upload_metadata
from .payloads import PayloadError

__all__ = ["Client", "OperationError", "PayloadError", "upload_metadata"]
