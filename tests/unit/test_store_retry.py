"""Store requests under faults: which failures are retried, how often and how
long, what callers then get, and the ambiguous create whose answer was lost.
The faults come from a real S3 server (moto) on loopback that fails on purpose."""
from __future__ import annotations

import errno
import os
import time

import pytest

from explaind.server.store.objects import KeyExists, ObjectStore
from explaind.server.store.retry import StoreError, StoreRetry, StoreUnavailable, is_transient
from tests.faulty_s3 import Fault, FaultyS3

pytestmark = pytest.mark.timeout(120)
BUCKET = "retries"


@pytest.fixture(scope="module")
def s3():
    server = FaultyS3().start()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL_S3": server.endpoint, "FSSPEC_S3_ENDPOINT_URL": server.endpoint}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import boto3
    boto3.client("s3", endpoint_url=server.endpoint).create_bucket(Bucket=BUCKET)
    yield server
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


class Attempts:
    def __init__(self):
        self.seen: list[tuple[str, str | None]] = []

    def __call__(self, operation, seconds, error):
        self.seen.append((operation, None if error is None else type(error).__name__))

    def failed(self, operation=None) -> int:
        return sum(1 for op, err in self.seen if err is not None and operation in (None, op))


def store(prefix: str, attempts: int = 3, timeout_s: float = 1.0) -> tuple[ObjectStore, Attempts]:
    seen = Attempts()
    return ObjectStore(f"s3://{BUCKET}/{prefix}", StoreRetry(attempts, first_backoff_s=0.02, max_backoff_s=0.1),
                       timeout_s=timeout_s, observe=seen), seen


@pytest.mark.parametrize("action", ["unavailable", "error", "reset", "hang"])
def test_transient_faults_are_retried_then_reported_unavailable(s3, action):
    objects, seen = store(f"t-{action}", timeout_s=0.5)
    objects.write("k", b"v")
    # A dropped keep-alive connection is tried again once by the HTTP client itself
    # (aiohttp), so two resets make one failed attempt here.
    times = 2 if action == "reset" else 1
    with_one = s3.add(Fault(action, method="GET", seconds=2.0, times=times))
    assert objects.read("k") == b"v"                       # one failed attempt, then the retry succeeds
    assert with_one.hits == times and seen.failed("read") == 1
    always = s3.add(Fault(action, seconds=2.0))
    t0 = time.monotonic()
    try:
        requests = [lambda: objects.read("k"), lambda: objects.write("k", b"w"), lambda: objects.exists("k"),
                    lambda: objects.list(""), lambda: objects.versions("")]
        for request in requests[:2] if action == "hang" else requests:   # a hang costs its timeouts
            with pytest.raises(StoreUnavailable, match="unreachable") as err:
                request()
            assert "failed 3 times" in str(err.value)
    finally:
        s3.remove(always)
    # A hung store costs attempts x the request timeout (2 x 3 x 0.5 s), not the client's
    # defaults (15 s and more per attempt: 90 s here). The margin absorbs a loaded machine.
    assert time.monotonic() - t0 < (2 * 3 * 0.5 + 17 if action == "hang" else 20)
    assert objects.read("k") == b"v"                        # the write never landed


def test_permanent_faults_are_not_retried(s3):
    objects, seen = store("denied")
    objects.write("k", b"v")
    fault = s3.add(Fault("denied", method="GET"))
    try:
        with pytest.raises(StoreError, match="refused read"):
            objects.read("k")
    finally:
        s3.remove(fault)
    assert fault.hits == 1 and seen.failed("read") == 1


def test_not_found_and_exists_are_answers_not_failures(s3):
    objects, seen = store("answers")
    assert objects.read("nothing") is None and not objects.exists("nothing") and objects.list("none") == []
    objects.create("claim", b"mine")
    with pytest.raises(KeyExists):
        objects.create("claim", b"theirs")
    assert seen.failed() == 0


def test_a_create_whose_answer_was_lost_is_recognised_as_done(s3):
    objects, seen = store("lost")
    fault = s3.add(Fault("lost", method="PUT", key=r"/claim", times=1))
    objects.create("claim", b"mine")     # landed, answer lost; the repeat finds the key: it holds our bytes
    assert fault.hits == 1 and ("read", None) in seen.seen and objects.read("claim") == b"mine"
    fault = s3.add(Fault("lost", method="PUT", key=r"/other", times=1))
    objects.write("other", b"idempotent")                    # a PUT is simply sent again
    assert fault.hits == 1 and objects.read("other") == b"idempotent"


def test_uploads_and_downloads_retry_per_file(s3, tmp_path):
    objects, seen = store("files")
    local = tmp_path / "build"
    local.mkdir()
    for name in ("a.bin", "b.bin", "c.bin"):
        (local / name).write_bytes(os.urandom(2048))
    fault = s3.add(Fault("unavailable", method="PUT", key=r"/b\.bin", times=2))
    assert objects.upload_dir(str(local), "builds/x") == 3 * 2048
    assert fault.hits == 2 and seen.failed("upload") == 2
    fault = s3.add(Fault("reset", method="GET", key=r"/c\.bin", times=2))    # see above: 2 resets, 1 failure
    objects.download_dir("builds/x", str(tmp_path / "copy"))
    assert fault.hits == 2 and seen.failed("download") == 1
    assert sorted(os.listdir(tmp_path / "copy")) == ["a.bin", "b.bin", "c.bin"]
    assert all((tmp_path / "copy" / n).read_bytes() == (local / n).read_bytes() for n in os.listdir(local))


def test_backoff_doubles_within_bounds_and_every_attempt_is_observed():
    waits, seen = [], Attempts()

    def request():
        raise ConnectionResetError(errno.ECONNRESET, "reset by peer")

    retry = StoreRetry(attempts=5, first_backoff_s=0.1, max_backoff_s=0.3)
    with pytest.raises(StoreUnavailable):
        retry.call("read", "k", request, seen, sleep=waits.append)
    assert len(waits) == 4 and len(seen.seen) == 5
    for wait, ceiling in zip(waits, (0.1, 0.2, 0.3, 0.3)):   # jittered in [ceiling/2, ceiling]
        assert ceiling / 2 <= wait <= ceiling


def test_classification():
    import botocore.exceptions
    from s3fs.errors import translate_boto_error

    def client_error(status: int, code: str):
        return botocore.exceptions.ClientError(
            {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")

    assert is_transient(translate_boto_error(client_error(503, "SlowDown")))
    assert is_transient(translate_boto_error(client_error(500, "InternalError")))
    assert is_transient(botocore.exceptions.EndpointConnectionError(endpoint_url="http://x"))
    assert is_transient(botocore.exceptions.ReadTimeoutError(endpoint_url="http://x"))
    assert is_transient(TimeoutError()) and is_transient(ConnectionRefusedError())
    assert not is_transient(translate_boto_error(client_error(403, "AccessDenied")))
    assert not is_transient(translate_boto_error(client_error(404, "NoSuchKey")))
    assert not is_transient(translate_boto_error(client_error(400, "SomethingNew")))   # EIO, but the caller's
    assert not is_transient(OSError(errno.ENOSPC, "disk full"))
    assert not is_transient(ValueError("bad path"))


@pytest.mark.parametrize("attempts", [0, -1, 101, 10**9])
def test_hostile_attempts_are_refused(attempts):
    with pytest.raises(ValueError, match="--store-attempts"):
        StoreRetry(attempts=attempts)


@pytest.mark.parametrize("timeout_s", [-1.0, float("nan"), float("inf"), 1e9])
def test_hostile_timeouts_are_refused(tmp_path, timeout_s):
    with pytest.raises(ValueError, match="--store-timeout-seconds"):
        ObjectStore(str(tmp_path), timeout_s=timeout_s)
    with pytest.raises(ValueError, match="backoff"):
        StoreRetry(first_backoff_s=timeout_s, max_backoff_s=5.0)
