"""Retries of store requests: which failures are transient, and how often and
how long to try again.

An object store fails now and then (a dropped connection, a 503 SlowDown, a
timeout) and, a few times a year, for minutes. Every request ObjectStore
makes goes through `StoreRetry.call`:
- "not found" and "already exists" are answers, not failures: raised as they are;
- a transient failure is tried again after a jittered, doubling backoff, up to
  `attempts` tries in all; then StoreUnavailable (UNAVAILABLE: try later, or
  on another replica);
- any other failure (access denied, a malformed request) is raised at once as
  StoreError: trying again would fail the same way.
Every attempt is timed and every failed one counted, by operation, through
`observe` (the metrics explaind_store_request_seconds and explaind_store_errors_total).

This is the only retry layer: the object-store client's own retries are
turned off (objects.py), so an outage costs a known, bounded time and every
failed request shows in the metrics.
"""
from __future__ import annotations

import dataclasses
import errno
import logging
import random
import time
from typing import Callable, TypeVar

from ..errors import ExplaindError, Unavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

# errno values that say "the store or the network, not the request": s3fs maps
# 500 InternalError to EREMOTEIO, 503 SlowDown/ServiceUnavailable to EBUSY and an
# unknown S3 error to EIO (whose cause then tells whose fault it was).
_TRANSIENT_ERRNOS = frozenset(getattr(errno, name) for name in (
    "EIO", "EREMOTEIO", "EBUSY", "EAGAIN", "ETIMEDOUT", "ECONNREFUSED", "ECONNRESET", "ECONNABORTED",
    "EPIPE", "EHOSTUNREACH", "ENETUNREACH", "ENETDOWN") if hasattr(errno, name))
# Connection and timeout errors of the HTTP clients under fsspec (botocore, aiohttp,
# http.client), matched by class name so that none of them has to be installed.
_TRANSIENT_TYPES = frozenset({
    "EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError", "ConnectTimeoutError",
    "HTTPClientError", "ProxyConnectionError", "ClientConnectionError", "ServerDisconnectedError",
    "ClientPayloadError", "ServerTimeoutError", "IncompleteRead", "RemoteDisconnected"})
_ANSWERS = (FileNotFoundError, FileExistsError)
_PERMANENT = _ANSWERS + (PermissionError, IsADirectoryError, NotADirectoryError)


class StoreUnavailable(Unavailable):
    """The store did not answer, every attempt of a request failed transiently."""


class StoreError(ExplaindError):
    """The store refused a request (credentials, permissions, a bad request)."""


def http_status(error: BaseException | None) -> int | None:
    """The HTTP status of a store client's error, where it carries one."""
    if error is None:
        return None
    response = getattr(error, "response", None)
    if isinstance(response, dict):                       # botocore ClientError
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return status if isinstance(status, int) else None
    for value in (getattr(response, "status_code", None), getattr(error, "status", None),
                  None if isinstance(error, OSError) else getattr(error, "code", None)):
        if isinstance(value, int) and 100 <= value < 600:  # requests, aiohttp, gcsfs HttpError
            return value
    return None


def _server_side(status: int) -> bool:
    return status >= 500 or status in (408, 429)


def is_transient(error: BaseException, _depth: int = 0) -> bool:
    """Whether trying the same request again may succeed."""
    if isinstance(error, _PERMANENT):
        return False
    if isinstance(error, (TimeoutError, ConnectionError)):
        return True
    status = http_status(error)
    if status is not None:
        return _server_side(status)
    if any(kind.__name__ in _TRANSIENT_TYPES for kind in type(error).__mro__):
        return True
    if isinstance(error, OSError) and error.errno in _TRANSIENT_ERRNOS:
        cause_status = http_status(error.__cause__)
        return cause_status is None or _server_side(cause_status)
    cause = error.__cause__ or error.__context__
    return cause is not None and _depth < 4 and is_transient(cause, _depth + 1)


def describe(error: BaseException, limit: int = 300) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


Observe = Callable[[str, float, BaseException | None], None]


@dataclasses.dataclass(frozen=True)
class StoreRetry:
    attempts: int = 4                 # tries of one request, the first included
    first_backoff_s: float = 0.2
    max_backoff_s: float = 5.0

    def __post_init__(self):
        if not 1 <= self.attempts <= 100:
            raise ValueError(f"store attempts (--store-attempts) must be 1 to 100, got {self.attempts}")
        if not 0 <= self.first_backoff_s <= self.max_backoff_s <= 600:
            raise ValueError(f"store backoff must be 0 <= first <= max <= 600 s, got {self.first_backoff_s}, "
                             f"{self.max_backoff_s}")

    def call(self, operation: str, key: str, request: Callable[[], T], observe: Observe | None = None,
             sleep: Callable[[float], None] = time.sleep) -> T:
        """`request()`, tried again on transient failures (see the module docstring)."""
        backoff = self.first_backoff_s
        attempt = 0
        while True:
            attempt += 1
            start = time.perf_counter()
            try:
                result = request()
            except _ANSWERS:
                if observe is not None:
                    observe(operation, time.perf_counter() - start, None)   # an answer
                raise
            except Exception as error:  # noqa: BLE001 - classified below
                if observe is not None:
                    observe(operation, time.perf_counter() - start, error)
                if not is_transient(error):
                    raise StoreError(f"the store refused {operation} of {key!r}: {describe(error)}") from error
                if attempt >= self.attempts:
                    raise StoreUnavailable(f"the store is unreachable: {operation} of {key!r} failed "
                                           f"{attempt} times; last: {describe(error)}") from error
                log.debug("store %s of %r failed (attempt %d): %s", operation, key, attempt, describe(error))
                sleep(random.uniform(backoff / 2, backoff))
                backoff = min(backoff * 2, self.max_backoff_s)
            else:
                if observe is not None:
                    observe(operation, time.perf_counter() - start, None)
                return result
