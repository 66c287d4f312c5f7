"""--allowed-uri-prefix: hostile URIs (.., //, encodings, schemes, symlinks) are refused
wherever a URI is opened, naming the request field; allowed ones still work."""
from __future__ import annotations

import json
import os

import grpc
import pytest

from explaind.server.attributions.metadata import METADATA_FILE, load_metadata_for_model
from explaind.server.builds import readers
from explaind.server.errors import ExplaindError, PermissionDenied
from explaind.server.runtime import artifacts
from explaind.server.security import uris
from explaind.server.security.uris import UriPolicy

FIELD = "model.explanation_spec.parameters.examples.gcs_source.uris"


@pytest.fixture
def allowed(tmp_path):
    """A data folder that is allowed, a secret outside it, and the policy installed."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text('{"embedding": [1, 2]}\n')
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "passwd.jsonl").write_text('{"embedding": [6, 6]}\n')
    previous = uris.policy()
    uris.install(UriPolicy([str(data), "s3://bucket/team"]))
    yield data, secret
    uris.install(previous)


def refused(uri, field=FIELD):
    with pytest.raises(PermissionDenied) as info:
        uris.check(uri, field)
    assert info.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert info.value.field == field
    return info.value.message


def test_allowed_local_forms_open_the_real_path(allowed):
    data, _ = allowed
    real = os.path.realpath(data / "train.jsonl")
    for uri in (str(data / "train.jsonl"), f"file://{data}/train.jsonl", f"file://localhost{data}/train.jsonl",
                f"{data}//train.jsonl", f"{data}/./train.jsonl", f"{data}/sub/../train.jsonl",
                f"file://{str(data).replace('/', '%2F')}%2Ftrain.jsonl".replace("file://%2F", "file:///"),
                str(data)):
        assert uris.check(uri, FIELD) in (real, os.path.realpath(data)), uri


def test_dot_dot_and_segment_tricks_are_refused(allowed):
    data, secret = allowed
    for uri in (f"{data}/../secret/passwd.jsonl",                  # TorchServe CVE-2024-35198's '..'
                f"{data}/./../secret/passwd.jsonl",
                f"{data}//..//secret/passwd.jsonl",
                f"file://{data}/%2e%2e/secret/passwd.jsonl",       # encoded dots, decoded in file:// URLs
                f"file://{data}/..%2Fsecret/passwd.jsonl",
                f"{data}/*/../../secret/passwd.jsonl",             # a glob that climbs out
                f"{data}base/x.jsonl",                             # a sibling sharing the prefix's letters
                "/etc/passwd", "file:///etc/passwd", "~/.ssh/id_rsa"):
        assert "outside the allowed" in refused(uri), uri


def test_scheme_tricks_are_refused(allowed):
    data, _ = allowed
    for uri in ("file://evil.example.com/etc/passwd",              # a remote host in a file URL
                "data:text/plain,hello",                           # a scheme without //
                f"simplecache::file://{data}/train.jsonl",         # fsspec chaining
                f"{data}/train.jsonl::s3://bucket/team/x",
                "http://bucket/team/x.jsonl", "s3a://bucket/team/x.jsonl",   # other schemes
                "s3://bucket/team/../other/x.jsonl", "s3://bucket/team/%2e%2e/other/x.jsonl",
                "s3://bucket/team/..%2fother/x.jsonl", "s3://bucket/team/%252e%252e/x",   # double encoded
                "s3://bucket/team//x.jsonl", "s3://bucket/team/./x.jsonl", "s3://bucket/team\\..\\x",
                "s3://user:pw@bucket/team/x", "s3://bucket:443/team/x",
                "s3://bucket-evil/team/x", "s3://bucket/teamster/x", "s3://bucket/te*/x",
                f"{data}/train.jsonl\x00.png", "", "   "):
        refused(uri)


def test_allowed_remote_forms(allowed):
    for uri in ("s3://bucket/team/x.jsonl", "S3://BUCKET/team/x.jsonl", "s3://bucket/team/part-*.jsonl",
                "s3://bucket/team/", "s3://bucket/team/a%20b.jsonl"):
        assert uris.check(uri, FIELD) == uri


def test_prefixes_are_validated():
    with pytest.raises(ValueError):
        UriPolicy(["s3://bucket/*"])
    with pytest.raises(ValueError):
        UriPolicy(["s3://bucket/../x"])
    assert not UriPolicy(["", " "]).restricted
    assert UriPolicy([]).check("/etc/passwd", FIELD) == "/etc/passwd"   # unrestricted: unchanged


def test_a_symlink_named_like_data_is_refused_when_listed(allowed):
    """The issue's example: a link to /etc/passwd named leak.jsonl inside an allowed folder."""
    data, secret = allowed
    os.symlink(secret / "passwd.jsonl", data / "leak.jsonl")
    with pytest.raises(PermissionDenied) as info:
        readers.expand_uris([str(data / "leak.jsonl")], FIELD)
    assert info.value.field == f"{FIELD}[0]"
    # The same file reached through a glob and through the folder.
    for uri in (str(data / "*.jsonl"), str(data)):
        with pytest.raises(PermissionDenied) as info:
            readers.expand_uris([str(data / "train.jsonl"), uri], FIELD)
        assert info.value.field == f"{FIELD}[1]" and "leak.jsonl" in info.value.message


def test_a_linked_folder_inside_the_prefix_is_refused(allowed):
    data, secret = allowed
    os.symlink(secret, data / "more")
    for uri in (str(data / "more" / "passwd.jsonl"), str(data / "more")):
        with pytest.raises(PermissionDenied):
            readers.expand_uris([uri], FIELD)
    # fsspec's glob does not descend into linked folders; either way nothing of secret/ comes back.
    with pytest.raises(ExplaindError):
        readers.expand_uris([str(data / "m*" / "*.jsonl")], FIELD)


def test_links_that_stay_inside_are_read_under_their_own_name_format(allowed):
    data, _ = allowed
    blobs = data / "blobs"
    blobs.mkdir()
    (blobs / "0a1b2c").write_text('{"embedding": [3, 4]}\n')       # content-addressed, no extension
    os.symlink(blobs / "0a1b2c", data / "more.jsonl")
    paths = readers.expand_uris([str(data / "more.jsonl")], FIELD)
    assert paths == [os.path.realpath(blobs / "0a1b2c")]
    records = list(readers.iter_records(paths, None, FIELD))
    assert [list(r.embedding) for r in records] == [[3.0, 4.0]]


def test_without_prefixes_links_are_followed_as_before(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"embedding": [1]}\n')
    os.symlink(tmp_path / "a.jsonl", tmp_path / "b.jsonl")
    assert readers.expand_uris([str(tmp_path / "b.jsonl")], FIELD) == [str(tmp_path / "b.jsonl")]


def test_saved_model_folder_with_a_link_out_is_refused(allowed):
    data, secret = allowed
    model = data / "model"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"")
    os.symlink(secret / "passwd.jsonl", model / "variables" / "variables.index")
    with pytest.raises(PermissionDenied) as info:
        artifacts.fetch(str(model))
    assert info.value.field == "model.artifact_uri" and "variables.index" in info.value.message
    os.unlink(model / "variables" / "variables.index")
    assert artifacts.fetch(str(model)).path == os.path.realpath(model)
    with pytest.raises(PermissionDenied):
        artifacts.fetch(str(secret))
    with pytest.raises(PermissionDenied):
        artifacts.fetch(f"{model}/../../secret")


def test_metadata_beside_the_model_may_not_link_out(allowed):
    data, secret = allowed
    model = data / "model"
    model.mkdir()
    (secret / "meta.json").write_text(json.dumps({"inputs": {}, "outputs": {}}))
    os.symlink(secret / "meta.json", model / METADATA_FILE)
    with pytest.raises(PermissionDenied) as info:
        load_metadata_for_model(str(model))
    assert info.value.field == "model.artifact_uri"
    os.unlink(model / METADATA_FILE)
    (model / METADATA_FILE).write_text(json.dumps({"inputs": {"x": {}}, "outputs": {"y": {}}}))
    assert set(load_metadata_for_model(str(model)).inputs) == {"x"}
