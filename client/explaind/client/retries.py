"""What the Python SDK retries, and how.

Most of it is gRPC's own retry support: `service_config.json`, beside this
file, is the service config of every channel the SDK opens. It retries
UNAVAILABLE (a replica stopping or restarting, a connection that dropped),
with at most 5 attempts and exponential backoff, for the calls that are safe
to send twice: Explain and Predict (they change nothing), the reads of models
and operations, and CancelOperation (a marker: asking twice is asking once).
Generated clients in other languages take the same JSON (docs/reliability.md).

Not retried: DeleteModel and DeleteOperation (a repeat of one that did land
answers NOT_FOUND, which would hide the success), UpdateExplanationDataset (a
repeat of one that did land would apply the change twice), and UploadModel in the
service config, since a repeat could start a second build. With a `model_id`
an upload is idempotent in effect, because an id is built once:
`upload_with_retry` repeats it on UNAVAILABLE and, when a repeat answers
ALREADY_EXISTS, reads the model back. The same model (every field the caller
set) means an earlier attempt did start it, and its operation is returned;
another model under that id is a real conflict, and ALREADY_EXISTS is raised.
"""
from __future__ import annotations

import dataclasses
import json
import random
import time
from pathlib import Path
from typing import Callable, Iterator

import grpc
from google.longrunning import operations_pb2

from explaind.v1 import model_pb2

SERVICE_CONFIG_JSON = (Path(__file__).parent / "service_config.json").read_text()

# Fields the server sets on an uploaded model; the others are the caller's.
_SERVER_FIELDS = ("name", "state", "create_time", "update_time", "index_info")


def channel_options(max_message_bytes: int) -> list[tuple[str, object]]:
    """Options for a channel with the SDK's retry policy."""
    return [("grpc.service_config", SERVICE_CONFIG_JSON),
            ("grpc.enable_retries", 1),
            # gRPC retries only what it still holds; its default (256 KiB) would leave
            # a large Explain (images) without retries.
            ("grpc.per_rpc_retry_buffer_size", max_message_bytes)]


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    initial_backoff_s: float
    max_backoff_s: float
    multiplier: float
    codes: frozenset[grpc.StatusCode]

    @classmethod
    def from_service_config(cls, text: str = SERVICE_CONFIG_JSON) -> "RetryPolicy":
        policy = json.loads(text)["methodConfig"][0]["retryPolicy"]
        return cls(max_attempts=min(int(policy["maxAttempts"]), 5),   # gRPC's own cap
                   initial_backoff_s=_seconds(policy["initialBackoff"]),
                   max_backoff_s=_seconds(policy["maxBackoff"]),
                   multiplier=float(policy["backoffMultiplier"]),
                   codes=frozenset(grpc.StatusCode[c] for c in policy["retryableStatusCodes"]))

    def delays(self) -> Iterator[float]:
        """The waits before each retry, jittered as gRPC does: uniform in [0, backoff)."""
        backoff = self.initial_backoff_s
        for _ in range(self.max_attempts - 1):
            yield random.uniform(0, backoff)
            backoff = min(backoff * self.multiplier, self.max_backoff_s)


def _seconds(duration: str) -> float:
    if not duration.endswith("s"):
        raise ValueError(f"not a service-config duration: {duration!r}")
    return float(duration[:-1])


def upload_with_retry(send: Callable[[], operations_pb2.Operation],
                      read_back: Callable[[], operations_pb2.Operation | None],
                      policy: RetryPolicy | None = None,
                      sleep: Callable[[float], None] = time.sleep) -> operations_pb2.Operation:
    """`send()` until it answers, retrying the policy's codes; an ALREADY_EXISTS on a
    repeat returns `read_back()` when that finds the upload, else is raised."""
    policy = policy or RetryPolicy.from_service_config()
    delays = policy.delays()
    repeated = False
    while True:
        try:
            return send()
        except grpc.RpcError as error:
            code = error.code()
            if code == grpc.StatusCode.ALREADY_EXISTS and repeated:
                found = read_back()
                if found is not None:
                    return found
                raise
            delay = next(delays, None) if code in policy.codes else None
            if delay is None:
                raise
            sleep(delay)
            repeated = True


def same_upload(stored: model_pb2.Model, sent: model_pb2.Model) -> bool:
    """Whether `stored` is what uploading `sent` makes (the server's own fields aside)."""
    a, b = model_pb2.Model(), model_pb2.Model()
    a.CopyFrom(stored)
    b.CopyFrom(sent)
    for message in (a, b):
        for field in _SERVER_FIELDS:
            message.ClearField(field)
    return a == b
