"""Roles, credentials files and the auth decision, without a server."""
from __future__ import annotations

import dataclasses
import logging
import os

import grpc
import pytest
from google.longrunning import operations_pb2
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from explaind.server.config import Settings
from explaind.server.security import Security, SettingsError
from explaind.server.security.auth import Authorizer
from explaind.server.security.identities import IdentityRoles, TokenRoles, load_role_entries
from explaind.server.security.roles import ADMIN, METHOD_ROLES, OPEN, PREDICT, Role, required_role, uncovered
from explaind.server.security.uris import install, policy
from explaind.v1 import batch_service_pb2, model_service_pb2, prediction_service_pb2
from tests.certs import CA

UNAUTHENTICATED, DENIED = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED
SERVICES = [model_service_pb2.DESCRIPTOR.services_by_name["ModelService"],
            prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"],
            operations_pb2.DESCRIPTOR.services_by_name["Operations"],
            batch_service_pb2.DESCRIPTOR.services_by_name["BatchService"],
            health_pb2.DESCRIPTOR.services_by_name["Health"],
            reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"]]
# What the issue says each kind of caller may do, written out independently of roles.py.
ADMIN_ONLY = {"UploadModel", "DeleteModel", "UpdateExplanationDataset", "CancelOperation", "DeleteOperation",
              "BatchExplain"}
OPEN_SERVICES = {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def write(path, text):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return str(path)


def test_role_table_matches_the_issue_for_every_method_of_every_service():
    for service in SERVICES:
        for method in service.methods:
            role = required_role(f"/{service.full_name}/{method.name}")
            expected = OPEN if service.full_name in OPEN_SERVICES else ADMIN if method.name in ADMIN_ONLY else PREDICT
            assert role is expected, (service.full_name, method.name)
    # Every entry names a real method (a typo in roles.py would leave the real one uncovered).
    from explaind.server.vertex.prediction import method_handlers

    from explaind.server.vertex import jobs as vertex_jobs
    from explaind.server.vertex import services as vertex_resources

    vertex = {service: set(methods) for service, methods in method_handlers(None).items()}   # hand-registered
    resources = {service: set(methods) for service, methods in vertex_resources.SERVICES.items()}
    resources.update({service: set(vertex_jobs.METHODS) for service in vertex_jobs.SERVICES})
    writes = {"UploadModel", "DeleteModel", "UpdateExplanationDataset", "CreateEndpoint", "UpdateEndpoint",
              "DeleteEndpoint", "DeployModel", "UndeployModel",
              "CreateBatchPredictionJob", "CancelBatchPredictionJob", "DeleteBatchPredictionJob"}
    for service, methods in resources.items():     # Vertex's Model, Endpoint and JobService: admin writes
        for method in methods:
            assert required_role(f"/{service}/{method}") is (ADMIN if method in writes else PREDICT), method
    vertex.update(resources)
    for service, methods in METHOD_ROLES.items():
        if service == "grpc.reflection.v1.ServerReflection" and service not in _pool_services():
            continue
        names = vertex[service] if service in vertex else \
            {m.name for m in descriptor_pool.Default().FindServiceByName(service).methods}
        assert set(methods) == names, service
    for service, methods in vertex.items():
        for method in methods:
            if service not in resources:
                assert required_role(f"/{service}/{method}") is PREDICT, (service, method)


def _pool_services():
    try:
        descriptor_pool.Default().FindServiceByName("grpc.reflection.v1.ServerReflection")
        return {"grpc.reflection.v1.ServerReflection"}
    except KeyError:
        return set()


def test_unknown_methods_have_no_role():
    assert required_role("/explaind.v1.ModelService/Exfiltrate") is None
    assert required_role("/evil.Service/Method") is None
    for malformed in ("", "/", "//", "/explaind.v1.ModelService", "/a/b/c", "explaind.v1.ModelService/"):
        assert required_role(malformed) is None
    assert uncovered({"explaind.v1.ModelService": {"GetModel", "NewAdminThing"}, "x.Y": {"Z"}}) == \
        ["/explaind.v1.ModelService/NewAdminThing", "/x.Y/Z"]


def test_role_files_and_folders(tmp_path):
    path = write(tmp_path / "tokens", "# comment\n\nadmin   a-token\npredict p-token\nPREDICT other token with spaces\n")
    assert load_role_entries(path) == [(ADMIN, "a-token"), (PREDICT, "p-token"), (PREDICT, "other token with spaces")]
    folder = tmp_path / "secret"
    folder.mkdir()
    write(folder / "admin", "a1\na2\n")
    write(folder / "predict", "p1\n")
    (folder / "..data").mkdir()                       # a Secret volume's internals are skipped
    assert sorted(load_role_entries(str(folder))) == sorted([(ADMIN, "a1"), (ADMIN, "a2"), (PREDICT, "p1")])
    write(folder / "root", "x\n")
    with pytest.raises(ValueError, match="named admin or predict"):
        load_role_entries(str(folder))


def test_a_bad_line_never_echoes_what_may_be_a_token(tmp_path):
    path = write(tmp_path / "tokens", "s3cr3t-token-value admin\n")
    with pytest.raises(ValueError) as info:
        load_role_entries(path)
    assert "s3cr3t" not in str(info.value) and "line 1" in str(info.value)
    with pytest.raises(ValueError, match="line 1"):
        load_role_entries(write(tmp_path / "t2", "admin\n"))


def test_tokens_compare_whole_values_and_reload_on_change(tmp_path, caplog):
    clock = Clock()
    path = write(tmp_path / "tokens", "admin a-token\npredict p-token\n")
    tokens = TokenRoles(path, clock=clock)
    assert tokens.role_of("a-token") is ADMIN and tokens.role_of("p-token") is PREDICT
    for wrong in ("a-toke", "a-token ", "A-TOKEN", "", "a-tokenX", "p-token\x00"):
        assert tokens.role_of(wrong) is None, wrong
    write(path, "predict a-token\n")                  # demoted and p-token revoked
    assert tokens.role_of("a-token") is ADMIN          # looked at again at most once a second
    clock.now += 1.5
    assert tokens.role_of("a-token") is PREDICT and tokens.role_of("p-token") is None
    write(path, "wizard a-token\n")                    # a broken file keeps the last good set
    clock.now += 1.5
    with caplog.at_level(logging.ERROR):
        assert tokens.role_of("a-token") is PREDICT
    assert "keeping the previous ones" in caplog.text and "a-token" not in caplog.text
    os.unlink(path)
    clock.now += 1.5
    assert tokens.role_of("a-token") is PREDICT


def test_authorizer_decisions(tmp_path):
    tokens = TokenRoles(write(tmp_path / "tokens", "admin a-token\npredict p-token\n"))
    identities = IdentityRoles(write(tmp_path / "ids", "admin spiffe://test/admin\npredict reader.example\n"
                                                       "predict O=acme,CN=subject-client\n"))
    auth = Authorizer(tokens, identities)
    upload, explain, health = ("/explaind.v1.ModelService/UploadModel", "/explaind.v1.PredictionService/Explain",
                               "/grpc.health.v1.Health/Check")

    def code(method, authorization=(), names=frozenset()):
        refusal = auth.check(method, authorization, set(names), "'x'")
        return refusal.code if refusal else None

    assert code(health) is None
    assert code(explain) is UNAUTHENTICATED and code(upload) is UNAUTHENTICATED
    assert code(explain, ["Bearer p-token"]) is None and code(upload, ["Bearer p-token"]) is DENIED
    assert code(upload, ["Bearer a-token"]) is None and code(upload, ["bearer a-token"]) is None
    for bad in (["Bearer nope"], ["Basic a-token"], ["a-token"], ["Bearer"], ["Bearer a-token", "Bearer a-token"],
                ["Bearer " + "x" * 5000]):
        assert code(explain, bad) is UNAUTHENTICATED, bad
    assert code(upload, (), {"spiffe://test/admin", "admin-client"}) is None
    assert code(explain, (), {"reader.example"}) is None and code(upload, (), {"reader.example"}) is DENIED
    assert code(explain, (), {"O=acme,CN=subject-client", "subject-client"}) is None
    assert code(explain, (), {"stranger"}) is DENIED                        # verified, but no role
    assert code(upload, ["Bearer a-token"], {"reader.example"}) is None     # the higher role counts
    assert code(upload, ["Bearer nope"], {"spiffe://test/admin"}) is UNAUTHENTICATED
    assert code("/explaind.v1.ModelService/Exfiltrate", ["Bearer a-token"]) is DENIED
    assert "a-token" not in auth.check(upload, ["Bearer a-token" + "x"]).message

    read_only = Authorizer(tokens, None, control_disabled=True)
    for method in ("/explaind.v1.ModelService/UploadModel", "/google.longrunning.Operations/CancelOperation"):
        refusal = read_only.check(method, ["Bearer a-token"])
        assert refusal.code is DENIED and "--disable-model-uploads" in refusal.message
    assert read_only.check(explain, ["Bearer p-token"]) is None

    nobody = Authorizer()                               # the embedded default: all open
    assert not nobody.enabled and nobody.check(upload) is None
    assert nobody.check("/evil.Service/Method").code is DENIED


@pytest.fixture
def restore_policy():
    previous = policy()
    yield
    install(previous)


def settings(**kw) -> Settings:
    return dataclasses.replace(Settings(), **kw)


def test_settings_that_cannot_work_stop_the_start(tmp_path, restore_policy):
    ca = CA()
    cert, key = ca.server_files(tmp_path)
    ca_file = ca.write(tmp_path / "ca.crt")
    ids = write(tmp_path / "ids", "admin x\n")
    for bad in (dict(tls_cert_file=cert), dict(tls_key_file=key), dict(tls_client_ca_file=ca_file),
                dict(tls_cert_file=cert, tls_key_file=cert),                   # not a key
                dict(tls_cert_file=cert, tls_key_file=key, tls_client_ca_file=key),
                dict(auth_client_identities_file=ids),                           # needs mTLS
                dict(tls_cert_file=cert, tls_key_file=key, auth_client_identities_file=ids),
                dict(metrics_tls=True), dict(auth_tokens_file=str(tmp_path / "missing")),
                dict(allowed_uri_prefix="s3://bucket/*"), dict(allowed_uri_prefix="s3://b/../c")):
        with pytest.raises(SettingsError):
            Security(settings(**bad))
    ok = Security(settings(tls_cert_file=cert, tls_key_file=key, tls_client_ca_file=ca_file,
                           auth_client_identities_file=ids, allowed_uri_prefix="s3://bucket/a, /data"))
    assert ok.certificates.mutual and ok.authorizer.enabled
    assert [p.uri() for p in ok.uri_policy.prefixes] == ["s3://bucket/a", "/data"]
    assert policy() is ok.uri_policy


def test_exposed_without_auth_is_said_loudly(tmp_path, capsys, caplog, restore_policy):
    with caplog.at_level(logging.WARNING):
        Security(settings(host="[::]")).warn_if_exposed(8500)
    err = capsys.readouterr().err
    assert "WARNING" in err and "no authentication" in err and "[::]:8500" in err and "--allowed-uri-prefix" in err
    assert any(r.levelno == logging.WARNING and "no authentication" in r.getMessage() for r in caplog.records)

    caplog.clear()
    for quiet in (settings(host="127.0.0.1"), settings(host="[::1]"),
                  settings(host="0.0.0.0", auth_tokens_file=write(tmp_path / "t", "admin a\n"),
                           tls_cert_file=CA().server_files(tmp_path)[0], tls_key_file=str(tmp_path / "tls.key"))):
        Security(quiet).warn_if_exposed(8500)
    assert capsys.readouterr().err == "" and not caplog.records

    Security(settings(host="0.0.0.0", auth_tokens_file=str(tmp_path / "t"))).warn_if_exposed(1)
    assert "clear text" in capsys.readouterr().err


def test_roles_parse():
    assert Role.parse(" Admin ") is ADMIN and Role.parse("predict") is PREDICT
    for bad in ("open", "root", ""):
        with pytest.raises(ValueError):
            Role.parse(bad)


def test_http_client_certificates_name_the_same_identities_as_grpc():
    from explaind.server.security.auth import http_certificate_names

    # ssl's getpeercert() form of a certificate whose subject is O=explaind tests, CN=admin-client
    peercert = {"subject": ((("organizationName", "explaind tests"),), (("commonName", "admin-client"),)),
                "subjectAltName": (("DNS", "admin.example"), ("URI", "spiffe://example/admin"))}
    names, shown = http_certificate_names(peercert)
    assert names == {"CN=admin-client,O=explaind tests", "admin-client", "admin.example", "spiffe://example/admin"}
    assert shown == repr("CN=admin-client,O=explaind tests")
    assert http_certificate_names(None) == (set(), "''")
