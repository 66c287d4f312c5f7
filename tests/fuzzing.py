"""Random request messages from the proto descriptors, and a runner that feeds
them to a real daemon (tests/integration/test_fuzz.py runs it briefly in CI,
tools/fuzz.py for as long as you like).

A generated message fills every field with a random value of its type, biased
towards what breaks servers: edge numbers (0, -1, extremes, NaN, infinities),
empty, huge and hostile strings (`..` URIs, chained fsspec URLs, resource names
of real and missing models), nested google.protobuf.Values beyond any sane
depth, huge repeated fields, out-of-range Timestamps and Durations, Any's of
unknown types, unknown enum values, and unknown fields appended to the wire
bytes. A share of calls send random bytes or a mutated message instead.

Every answer must be a status other than UNKNOWN and INTERNAL, the daemon must
stay up, and its memory (RSS) must stay bounded.
"""
from __future__ import annotations

import collections
import dataclasses
import math
import os
import random
import string
import struct
import time
from typing import Callable

import grpc
from google.protobuf import descriptor as descriptor_mod
from google.longrunning import operations_pb2  # noqa: F401  (each registers its services in the pool)
from google.protobuf import descriptor_pool, message_factory
from google.protobuf import message as message_mod
from grpc_health.v1 import health_pb2  # noqa: F401
from grpc_reflection.v1alpha import reflection_pb2  # noqa: F401

from explaind.client.values import _varint
from explaind.v1 import model_service_pb2, prediction_service_pb2  # noqa: F401

FD = descriptor_mod.FieldDescriptor
SERVER_FAULTS = (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)
# The services fuzzed and, for destructive methods, the names they must not hit
# (the base model the rest of the run explains against).
SERVICES = ("explaind.v1.ModelService", "explaind.v1.PredictionService", "google.longrunning.Operations",
            "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection")
DESTRUCTIVE = {"DeleteModel", "UpdateExplanationDataset", "DeleteOperation", "CancelOperation"}

INT_EDGES = (0, 1, -1, 2, 7, 10, 100, 1000, 1024, 1025, 65535, 2**31 - 1, -2**31, 2**53, -2**53)
FLOAT_EDGES = (0.0, -0.0, 1.0, -1.0, 0.5, 1e-45, 1e-300, 1e38, 3.5e38, 1e308, -1e308,
               math.inf, -math.inf, math.nan)
HOSTILE_STRINGS = (
    "", " ", "..", "../../../../etc/passwd", "/etc/passwd", "/etc/shadow", "/dev/zero", "/proc/self/environ",
    "file:///etc/passwd", "file://evil.example.com/etc/passwd", "file:///%2e%2e/%2e%2e/etc/passwd",
    "s3://bucket/../other", "gs://b//x", "http://169.254.169.254/latest/meta-data/", "memory://x",
    "simplecache::file:///etc/passwd", "zip://x::file:///etc/passwd", "data:text/plain,aGVsbG8=",
    "models/", "models/..", "models/../../x", "operations/..", "operations/", "/", "//", "*", "**/*",
    "~", "~/.ssh/id_rsa", "\x00", "a\x00b", "\u202e\u0000\ud7ff", "%00", "%2e%2e%2f", "${jndi:ldap://x}",
    "'; DROP TABLE models; --", "done=true AND model=x", "done=", "AND AND", "model=\"\"", "error=maybe",
    "{\"a\": 1}", "[1, 2, 3]", "NaN", "-Infinity", "1e999", "\\\\server\\share",
)


ALPHABET = string.printable + "é中😀\u0301\u200b"


def _random_text(rng: random.Random, n: int) -> str:
    if n > 64:     # long strings: a random chunk, repeated (cheap to make, as hostile to the server)
        chunk = _random_text(rng, 64)
        return (chunk * (n // 64 + 1))[:n]
    return "".join(rng.choices(ALPHABET, k=n))


@dataclasses.dataclass
class Pools:
    """Values worth hitting: names of real things, URIs under the allowed prefix, and
    valid requests per method name (mutated, they reach deeper than random ones)."""
    names: list[str]
    uris: list[str]
    dimensions: int = 4
    seeds: dict = dataclasses.field(default_factory=dict)
    protected: tuple = ()      # names destructive methods leave alone (what the run explains against)


class MessageFuzzer:
    def __init__(self, rng: random.Random, pools: Pools, huge: int = 5_000, max_depth: int = 6,
                 max_elements: int = 20_000, max_chars: int = 1_000_000):
        self.rng = rng
        self.pools = pools
        self.huge = huge
        self.max_depth = max_depth
        self.max_elements = max_elements      # repeated elements in one message, all fields together
        self.max_chars = max_chars            # characters of long strings in one message
        self.left = max_elements
        self.chars_left = max_chars
        self.bytes_left = 8 * max_chars       # repeated copies of composite elements

    # ------------------------------------------------------------ scalars
    def integer(self, field) -> int:
        r = self.rng.random()
        if r < 0.6:
            value = self.rng.choice(INT_EDGES)
        elif r < 0.9:
            value = self.rng.randint(-1000, 1000)
        else:
            value = self.rng.randint(-2**63, 2**63 - 1)
        return _clamp(field, value)

    def floating(self) -> float:
        return self.rng.choice(FLOAT_EDGES) if self.rng.random() < 0.5 else self.rng.uniform(-1e6, 1e6)

    def text(self, name: str) -> str:
        """A string for a field called `name`."""
        r = self.rng.random()
        name = name.lower()
        if r < 0.35 and (name in ("name", "model", "parent") or name.endswith("_name")):
            return self.rng.choice(self.pools.names)
        if r < 0.35 and "uri" in name:
            return self.rng.choice(self.pools.uris)
        if r < 0.5:
            return self.rng.choice(HOSTILE_STRINGS)
        if r < 0.55:
            n = min(self.rng.choice((1000, 10_000, 200_000)), self.chars_left)
            self.chars_left -= n
            return _random_text(self.rng, n)
        return _random_text(self.rng, self.rng.randint(0, 24))

    def raw(self) -> bytes:
        n = min(self.rng.choice((0, 1, 8, 100, 5000)), self.chars_left)
        self.chars_left -= n
        return self.rng.randbytes(n)

    # ------------------------------------------------------------ messages
    def message(self, descriptor, depth: int = 0):
        cls = message_factory.GetMessageClass(descriptor)
        full_name = descriptor.full_name
        if full_name == "google.protobuf.Value":
            return self.value(depth)
        if full_name == "google.protobuf.Struct":
            return cls(fields={self.text_key(): self.value(depth + 1) for _ in range(self.rng.randint(0, 4))})
        if full_name == "google.protobuf.ListValue":
            return cls(values=[self.value(depth + 1) for _ in range(self.rng.randint(0, 4))])
        if full_name == "google.protobuf.Any":
            return cls(type_url=self.rng.choice(("type.googleapis.com/explaind.v1.Model", "x/y", "",
                                                  "type.googleapis.com/nope.Nothing")), value=self.raw())
        message = cls()
        if depth > self.max_depth:
            return message
        oneofs_done = set()
        for field in descriptor.fields:
            if field.containing_oneof is not None:
                if field.containing_oneof.name in oneofs_done:
                    continue
                members = list(field.containing_oneof.fields)
                chosen = self.rng.choice(members + [None])
                oneofs_done.add(field.containing_oneof.name)
                if chosen is None:
                    continue
                field = chosen
            if self.rng.random() < 0.25:
                continue                    # unset: defaults matter too
            self.fill(message, field, depth)
        return message

    def fill(self, message, field, depth: int) -> None:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_field, value_field = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
            target = getattr(message, field.name)
            for _ in range(self.count()):
                key = self.scalar(key_field)
                if value_field.message_type is not None:
                    target[key].CopyFrom(self.message(value_field.message_type, depth + 1))
                else:
                    target[key] = self.scalar(value_field)
            return
        if field.is_repeated:
            target = getattr(message, field.name)
            n = self.count()
            if field.message_type is not None:
                distinct = [self.message(field.message_type, depth + 1) for _ in range(min(n, 8))]
                if distinct:           # many elements: a few random ones, repeated, within the byte budget
                    size = max(m.ByteSize() for m in distinct) + 4
                    n = max(len(distinct), min(n, self.bytes_left // size))
                    self.bytes_left -= n * size
                for i in range(n):
                    target.add().CopyFrom(distinct[i % len(distinct)])
            else:
                target.extend(self.scalar(field) for _ in range(n))
            return
        if field.message_type is not None:
            getattr(message, field.name).CopyFrom(self.message(field.message_type, depth + 1))
        else:
            setattr(message, field.name, self.scalar(field))

    def scalar(self, field):
        t = field.type
        if t in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
            value = self.floating()
            return value if t == FD.TYPE_DOUBLE or abs(value) < 3.4e38 or not math.isfinite(value) else 0.0
        if t == FD.TYPE_BOOL:
            return self.rng.random() < 0.5
        if t == FD.TYPE_STRING:
            return self.text(field.name)
        if t == FD.TYPE_BYTES:
            return self.raw()
        if t == FD.TYPE_ENUM:
            if self.rng.random() < 0.8:
                return self.rng.choice(field.enum_type.values).number
            return self.rng.choice((-1, 99, 2**31 - 1))          # open enums keep unknown numbers
        return self.integer(field)

    def count(self) -> int:
        r = self.rng.random()
        if r < 0.03:
            n = self.rng.randint(self.huge // 2, self.huge)
        elif r < 0.1:
            n = self.rng.randint(10, 2000)
        else:
            n = self.rng.randint(0, 4)
        n = min(n, self.left)
        self.left -= n
        return n

    def text_key(self) -> str:
        keys = ("features", "embedding", "id", "restricts", "crowding_tag", "x", "input", "", "namespace",
                "allow", "deny", "config", "dimensions", "algorithmConfig", "treeAhConfig", "bruteForceConfig",
                "distanceMeasureType", "leafNodeEmbeddingCount", "leafNodesToSearchPercent", "contentsDeltaUri")
        return self.rng.choice(keys) if self.rng.random() < 0.8 else _random_text(self.rng, 6)

    def value(self, depth: int):
        from google.protobuf import struct_pb2
        v = struct_pb2.Value()
        r = self.rng.random()
        if depth > 12 or r < 0.15:
            v.number_value = self.floating()
        elif r < 0.25:
            v.string_value = self.text("value")
        elif r < 0.3:
            v.bool_value = self.rng.random() < 0.5
        elif r < 0.33:
            v.null_value = 0
        elif r < 0.5:        # an embedding of the base model's size, or any size
            n = self.pools.dimensions if self.rng.random() < 0.6 else self.count()
            numbers = [self.floating() for _ in range(min(n, 64))]
            v.list_value.extend(numbers[i % len(numbers)] for i in range(n))
        elif r < 0.62:       # deep nesting (past the decoder's limit: see deep_value_bytes)
            inner = v
            for _ in range(self.rng.choice((5, 15, 30))):
                inner = inner.list_value.values.add()
            inner.number_value = 1.0
        elif r < 0.8:
            v.list_value.CopyFrom(self.message(struct_pb2.ListValue.DESCRIPTOR, depth + 1))
        else:
            v.struct_value.CopyFrom(self.message(struct_pb2.Struct.DESCRIPTOR, depth + 1))
        return v

    # ------------------------------------------------------------ wire bytes
    def request_bytes(self, descriptor, seeds=()) -> bytes:
        """A random message's bytes (or a valid seed's, mutated), with unknown fields
        sometimes; or plain random bytes, or the message's bytes corrupted."""
        r = self.rng.random()
        self.left, self.chars_left, self.bytes_left = self.max_elements, self.max_chars, 8 * self.max_chars
        if r < 0.1:
            return self.rng.randbytes(self.rng.choice((1, 3, 16, 300, 70_000)))
        if r < 0.11:        # past any sane --max-message-bytes: an unknown field of 5 MB
            return _varint(4243 << 3 | 2) + _varint(5 * 2**20) + bytes(5 * 2**20)
        try:
            if seeds and self.rng.random() < 0.5:
                data = self.mutate(self.rng.choice(seeds)).SerializeToString()
            else:
                data = self.message(descriptor).SerializeToString()
        except (ValueError, TypeError, RecursionError, message_mod.DecodeError):
            data = b""             # too deep to build here: the next branch sends deep bytes
        if r < 0.2:
            data += self.deep_value_field(descriptor)
        elif r < 0.35:
            data += self.unknown_fields()
        elif r < 0.45 and data:
            data = bytearray(data)
            for _ in range(self.rng.randint(1, 8)):
                data[self.rng.randrange(len(data))] = self.rng.randrange(256)
            data = bytes(data[: self.rng.randint(0, len(data))])
        return data

    def mutate(self, seed, depth: int = 0):
        """A copy of `seed` with a few fields replaced by random values, cleared, or
        mutated in turn; sometimes unchanged (the valid request itself)."""
        message = type(seed)()
        message.CopyFrom(seed)
        for field in message.DESCRIPTOR.fields:
            r = self.rng.random()
            if r < 0.12:
                message.ClearField(field.name)
                self.fill(message, field, depth + 1)
            elif r < 0.17:
                message.ClearField(field.name)
            elif r < 0.6 and field.message_type is not None and field.message_type.full_name not in (
                    "google.protobuf.Value", "google.protobuf.Struct", "google.protobuf.ListValue",
                    "google.protobuf.Any") and not field.message_type.GetOptions().map_entry:
                if field.is_repeated:
                    for element in getattr(message, field.name):
                        element.CopyFrom(self.mutate(element, depth + 1))
                elif message.HasField(field.name):
                    getattr(message, field.name).CopyFrom(self.mutate(getattr(message, field.name), depth + 1))
        return message

    def deep_value_field(self, descriptor) -> bytes:
        """A google.protobuf.Value field nested 40 to 500 lists deep, as wire bytes (the
        Python protobuf refuses to build past its own depth limit)."""
        numbers = [f.number for f in descriptor.fields
                   if f.message_type is not None and f.message_type.full_name == "google.protobuf.Value"]
        number = self.rng.choice(numbers) if numbers else 4242
        value = b"\x11" + struct.pack("<d", 1.0)                       # Value.number_value
        for _ in range(self.rng.choice((40, 49, 60, 500))):
            listed = b"\x0a" + _varint(len(value)) + value             # ListValue.values
            value = b"\x32" + _varint(len(listed)) + listed             # Value.list_value
        return _varint(number << 3 | 2) + _varint(len(value)) + value

    def unknown_fields(self) -> bytes:
        out = b""
        for _ in range(self.rng.randint(1, 5)):
            number = self.rng.choice((999, 12345, 536870911, self.rng.randint(100, 100000)))
            wire = self.rng.choice((0, 1, 2, 5))
            out += _varint(number << 3 | wire)
            if wire == 0:
                out += _varint(self.rng.randint(0, 2**64 - 1))
            elif wire == 1:
                out += struct.pack("<Q", self.rng.getrandbits(64))
            elif wire == 5:
                out += struct.pack("<I", self.rng.getrandbits(32))
            else:
                payload = self.rng.randbytes(self.rng.choice((0, 5, 300)))
                out += _varint(len(payload)) + payload
        return out


def _clamp(field, value: int) -> int:
    bits = {FD.TYPE_INT32: (-2**31, 2**31 - 1), FD.TYPE_SINT32: (-2**31, 2**31 - 1),
            FD.TYPE_SFIXED32: (-2**31, 2**31 - 1), FD.TYPE_UINT32: (0, 2**32 - 1), FD.TYPE_FIXED32: (0, 2**32 - 1),
            FD.TYPE_UINT64: (0, 2**64 - 1), FD.TYPE_FIXED64: (0, 2**64 - 1)}.get(field.type, (-2**63, 2**63 - 1))
    low, high = bits
    return min(max(value, low), high)


# ---------------------------------------------------------------- the runner

@dataclasses.dataclass(frozen=True)
class HandRegistered:
    """What the runner reads of a method descriptor, for Vertex's hand-registered
    methods (served under Google's names from explaind's own messages)."""
    name: str                 # also the key of its seeds
    input_type: object
    client_streaming: bool = False
    server_streaming: bool = False


def methods() -> list[tuple[str, object]]:
    """(method path, method descriptor) of every RPC fuzzed."""
    from explaind.server.vertex.prediction import METHODS as VERTEX_METHODS

    out = []
    for service in SERVICES:
        for method in descriptor_pool.Default().FindServiceByName(service).methods:
            out.append((f"/{service}/{method.name}", method))
    for service, vertex_methods in VERTEX_METHODS.items():
        version = service.split(".")[-2]
        for name, (request, _response) in vertex_methods.items():
            out.append((f"/{service}/{name}", HandRegistered(f"vertex {version} {name}", request.DESCRIPTOR)))
    from explaind.server.vertex.services import SERVICES as RESOURCE_SERVICES   # Model and EndpointService
    for service, resource_methods in RESOURCE_SERVICES.items():
        version = service.split(".")[-2]
        for name, (request, _response, _behaviour) in resource_methods.items():
            out.append((f"/{service}/{name}", HandRegistered(f"vertex {version} {name}", request.DESCRIPTOR)))
    return out


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclasses.dataclass
class Report:
    calls: int = 0
    codes: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    faults: list = dataclasses.field(default_factory=list)
    rss: list = dataclasses.field(default_factory=list)      # (calls so far, RSS bytes)
    seconds: float = 0.0

    def by_method(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = collections.defaultdict(dict)
        for (path, code), n in sorted(self.codes.items()):
            out[path][code] = n
        return dict(out)


def run(target: str, pid: int, pools: Pools, tokens: dict[str, str], per_method: int, seed: int = 0,
        window: int = 16, streaming_share: float = 0.1, alive: Callable[[], bool] = lambda: True,
        progress: Callable[[str], None] | None = None, seconds: float | None = None,
        only: str = "") -> Report:
    """Sends `per_method` random requests to every RPC (a tenth of that to the
    streaming ones), `window` in flight at once. With `seconds`, repeats rounds
    until that much time has passed."""
    rng = random.Random(seed)
    report = Report()
    started = time.monotonic()
    options = [("grpc.max_send_message_length", 256 * 1024 * 1024),
               ("grpc.max_receive_message_length", 256 * 1024 * 1024)]
    with grpc.insecure_channel(target, options=options) as channel:
        round_number = 0
        while True:
            for path, method in methods():
                if only and only not in path:
                    continue
                n = per_method if not (method.client_streaming or method.server_streaming) \
                    else max(1, int(per_method * streaming_share))
                safe_names = [p for p in pools.names if p.rsplit("/", 1)[-1] not in pools.protected] \
                    if method.name in DESTRUCTIVE else pools.names
                fuzzer = MessageFuzzer(rng, dataclasses.replace(pools, names=safe_names))
                _fuzz_method(channel, path, method, fuzzer, n, tokens, rng, report, window)
                report.rss.append((report.calls, rss_bytes(pid)))
                if not alive():
                    report.faults.append((path, "the daemon exited"))
                    return report
                if progress:
                    progress(f"{path}: {report.calls} calls, RSS {report.rss[-1][1] / 2**20:.0f} MiB")
            round_number += 1
            if seconds is None or time.monotonic() - started >= seconds:
                break
    report.seconds = time.monotonic() - started
    return report


def _credentials(rng: random.Random, tokens: dict[str, str]):
    r = rng.random()
    who = "admin" if r < 0.7 else "predict" if r < 0.85 else "none" if r < 0.95 else "bogus"
    token = tokens.get(who, "not-a-token" if who == "bogus" else None)
    return (("authorization", f"Bearer {token}"),) if token else None


def _fuzz_method(channel, path, method, fuzzer: MessageFuzzer, n: int, tokens, rng, report: Report,
                 window: int) -> None:
    if method.client_streaming or method.server_streaming:
        for _ in range(n):
            code = _streaming_call(channel, path, method, fuzzer, tokens, rng)
            if code in SERVER_FAULTS:
                report.faults.append((path, code.name, "(streaming call)", b""))
            _record(report, path, code)
        return
    stub = channel.unary_unary(path)
    pending = collections.deque()
    seeds = fuzzer.pools.seeds.get(method.name, ())
    for i in range(n):
        data = fuzzer.request_bytes(method.input_type, seeds)
        pending.append((stub.future(data, metadata=_credentials(rng, tokens), timeout=20), data))
        while len(pending) >= window or (i == n - 1 and pending):
            future, sent = pending.popleft()
            try:
                future.result()
                code = grpc.StatusCode.OK
            except grpc.RpcError as e:
                code = e.code()
                if code in SERVER_FAULTS:
                    report.faults.append((path, code.name, e.details(), sent[:2000]))
            _record(report, path, code)


def _streaming_call(channel, path, method, fuzzer, tokens, rng) -> grpc.StatusCode:
    kind = channel.stream_stream if method.client_streaming else channel.unary_stream
    stub = kind(path)
    data = fuzzer.request_bytes(method.input_type, fuzzer.pools.seeds.get(method.name, ()))
    metadata = _credentials(rng, tokens)
    try:
        call = stub(iter([data]) if method.client_streaming else data, metadata=metadata, timeout=5)
        for _ in call:
            call.cancel()
            break
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.CANCELLED:
            return grpc.StatusCode.OK
        return e.code()


def _record(report: Report, path: str, code: grpc.StatusCode) -> None:
    report.calls += 1
    report.codes[(path, code.name)] += 1


# ---------------------------------------------------------------- the target

TOKENS = {"admin": "fuzz-admin-token", "predict": "fuzz-predict-token"}


def prepare(base: str, **settings):
    """A daemon on loopback with auth, an allowed data folder and one served model
    ("base", embeddings of size 4 with restricts and crowding tags) to explain
    against. Returns (the ServerProcess, the Pools, the tokens)."""
    import json

    from explaind.client import Client
    from tests.server_process import ServerProcess

    data = os.path.join(base, "data")
    os.makedirs(data, exist_ok=True)
    rng = random.Random(7)
    with open(os.path.join(data, "base.jsonl"), "w") as f:
        for i in range(64):
            f.write(json.dumps({"id": f"e{i}", "embedding": [rng.uniform(-1, 1) for _ in range(4)],
                                "restricts": [{"namespace": "color", "allow": [rng.choice("rgb")]}],
                                "crowding_tag": rng.choice("xyz")}) + "\n")
    tokens_file = os.path.join(base, "tokens")
    with open(tokens_file, "w") as f:
        f.write("".join(f"{role} {token}\n" for role, token in TOKENS.items()))
    defaults = dict(auth_tokens_file=tokens_file, allowed_uri_prefix=data, max_message_bytes=4 * 2**20,
                    max_concurrent_uploads=2, max_examples_per_model=10_000, max_upload_data_gb=0.01,
                    log_level="WARNING", cache_dir=os.path.join(base, "cache"))
    server = ServerProcess(os.path.join(base, "store"), os.path.join(base, "server.log"),
                           **{**defaults, **settings}).start()
    model = {"displayName": "base", "explanationSpec": {"parameters": {"examples": {
        "gcsSource": {"uris": [os.path.join(data, "base.jsonl")]}, "neighborCount": 5,
        "nearestNeighborSearchConfig": {"contentsDeltaUri": "", "config": {
            "dimensions": 4, "distanceMeasureType": "SQUARED_L2_DISTANCE",
            "algorithmConfig": {"bruteForceConfig": {}}}}}}}}
    with Client(server.target, token=TOKENS["admin"]) as client:
        op = client.upload_model(model, model_id="base")
        client.wait(op, timeout=300)
    pools = Pools(
        names=["models/base", "base", "models/absent", "projects/p/locations/l/models/base", op.name,
               "operations/absent", "operations/" + "0" * 32],
        uris=[os.path.join(data, "base.jsonl"), os.path.join(data, "*.jsonl"), data, "file://" + data,
              os.path.join(data, "..", "data", "base.jsonl"), os.path.join(data, "missing.jsonl")],
        seeds=seeds(model, op.name), protected=("base", op.name.rsplit("/", 1)[-1]))
    return server, pools, dict(TOKENS)


def seeds(model: dict, operation: str) -> dict[str, list]:
    """A valid request per method: mutated, the fuzz gets past the first check."""
    from google.longrunning import operations_pb2 as ops
    from google.protobuf import duration_pb2, json_format, struct_pb2
    from grpc_health.v1 import health_pb2 as health
    from grpc_reflection.v1alpha import reflection_pb2 as reflection

    from explaind.v1 import explanation_pb2, model_pb2
    from explaind.v1 import model_service_pb2 as ms
    from explaind.v1 import prediction_service_pb2 as ps
    from explaind.vertex.v1 import prediction_service_pb2 as vertex_v1
    from explaind.vertex.v1beta1 import prediction_service_pb2 as vertex_v1beta1

    embedding = struct_pb2.Value(list_value=struct_pb2.ListValue(values=[
        struct_pb2.Value(number_value=x) for x in (0.1, -0.2, 0.3, 0.05)]))
    keyed = struct_pb2.Value()
    keyed.struct_value.update({"embedding": [0.1, 0.2, 0.3, 0.4], "id": "q",
                               "restricts": [{"namespace": "color", "deny": ["g"]}], "crowding_tag": "x"})
    override = explanation_pb2.ExplanationSpecOverride()
    examples = override.examples_override
    examples.neighbor_count, examples.crowding_count, examples.return_embeddings = 3, 1, True
    examples.data_format = explanation_pb2.ExamplesOverride.DataFormat.EMBEDDINGS
    examples.restrictions.add(namespace_name="color", allow=["r", "b"])
    upload = json_format.ParseDict(model, model_pb2.Model())
    from explaind.vertex.v1 import endpoint_service_pb2 as ves
    from explaind.vertex.v1 import model_service_pb2 as vms
    parent = "projects/p/locations/l"
    vertex_resources = {
        "UploadModel": [vms.UploadModelRequest(parent=parent, model_id="vfuzzed", model=vms.Model(
            display_name="f", explanation_spec=upload.explanation_spec))],
        "GetModel": [vms.GetModelRequest(name=f"{parent}/models/base@1")],
        "ListModels": [vms.ListModelsRequest(parent=parent, filter='labels.a:* OR display_name="x"', page_size=2)],
        "DeleteModel": [vms.DeleteModelRequest(name=f"{parent}/models/vfuzzed")],
        "UpdateExplanationDataset": [vms.UpdateExplanationDatasetRequest(model=f"{parent}/models/base")],
        "CreateEndpoint": [ves.CreateEndpointRequest(parent=parent, endpoint_id="fuzz",
                                                     endpoint=ves.Endpoint(display_name="f", labels={"a": "b"}))],
        "GetEndpoint": [ves.GetEndpointRequest(name=f"{parent}/endpoints/fuzz")],
        "ListEndpoints": [ves.ListEndpointsRequest(parent=parent, page_size=1)],
        "UpdateEndpoint": [ves.UpdateEndpointRequest(endpoint=ves.Endpoint(name=f"{parent}/endpoints/fuzz",
                                                                           display_name="g"),
                                                     update_mask={"paths": ["display_name"]})],
        "DeleteEndpoint": [ves.DeleteEndpointRequest(name=f"{parent}/endpoints/fuzz")],
        "DeployModel": [ves.DeployModelRequest(endpoint=f"{parent}/endpoints/fuzz", traffic_split={"0": 100},
                                               deployed_model=ves.DeployedModel(model=f"{parent}/models/base"))],
        "UndeployModel": [ves.UndeployModelRequest(endpoint=f"{parent}/endpoints/fuzz", deployed_model_id="1")],
    }
    return {
        **{f"vertex {version} {name}": requests for version in ("v1", "v1beta1")
           for name, requests in vertex_resources.items()},
        "Explain": [ps.ExplainRequest(name="models/base", instances=[embedding, keyed], explanation_spec_override=override),
                    ps.ExplainRequest(name="models/base", instances=[embedding])],
        "Predict": [ps.PredictRequest(name="models/base", instances=[embedding])],
        **{f"vertex {version} Explain": [module.ExplainRequest(
            endpoint="projects/p/locations/l/endpoints/base", instances=[embedding, keyed],
            explanation_spec_override=override)]    # explaind.v1's override: wire-identical to Vertex's
           for version, module in (("v1", vertex_v1), ("v1beta1", vertex_v1beta1))},
        **{f"vertex {version} Predict": [vertex_v1.PredictRequest(endpoint="projects/p/locations/l/endpoints/base",
                                                                  instances=[embedding])]
           for version in ("v1", "v1beta1")},
        "UploadModel": [ms.UploadModelRequest(model=upload, model_id="fuzzed")],
        "GetModel": [ms.GetModelRequest(name="models/base")],
        "ListModels": [ms.ListModelsRequest(page_size=2)],
        "DeleteModel": [ms.DeleteModelRequest(name="models/fuzzed")],
        "UpdateExplanationDataset": [ms.UpdateExplanationDatasetRequest(model="models/base")],
        "GetOperation": [ops.GetOperationRequest(name=operation)],
        "ListOperations": [ops.ListOperationsRequest(filter="done=true AND model=base", page_size=1)],
        "WaitOperation": [ops.WaitOperationRequest(name=operation, timeout=duration_pb2.Duration(seconds=1))],
        "CancelOperation": [ops.CancelOperationRequest(name="operations/" + "1" * 32)],
        "DeleteOperation": [ops.DeleteOperationRequest(name="operations/" + "1" * 32)],
        "Check": [health.HealthCheckRequest(service="explaind.v1.PredictionService")],
        "Watch": [health.HealthCheckRequest(service="")],
        "ServerReflectionInfo": [reflection.ServerReflectionRequest(list_services=""),
                                 reflection.ServerReflectionRequest(file_containing_symbol="explaind.v1.Model")],
    }
