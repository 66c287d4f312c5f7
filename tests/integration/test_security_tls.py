"""TLS and mutual TLS on a real daemon, with certificates made in the test:
plaintext and untrusted clients are refused, client certificates map to roles,
a rotated certificate reaches new connections without a restart, the metrics
port speaks TLS, the plaintext health port answers probes and nothing else,
and the SDK and the CLI connect with the same options."""
from __future__ import annotations

import http.client
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import health_pb2, health_pb2_grpc

from explaind.client import Client
from explaind.v1 import model_service_pb2, model_service_pb2_grpc
from tests.certs import CA, common_name, write_file, write_pair

pytestmark = pytest.mark.timeout(300)


def tls_channel(target, ca: bytes, cert_key: tuple[bytes, bytes] | None = None):
    cert, key = cert_key or (None, None)
    return grpc.secure_channel(target, grpc.ssl_channel_credentials(ca, key, cert))


def list_models(channel, token: str | None = None, timeout: float = 10):
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    return model_service_pb2_grpc.ModelServiceStub(channel).ListModels(
        model_service_pb2.ListModelsRequest(), metadata=metadata, timeout=timeout)


def delete_model(channel, token: str | None = None) -> grpc.StatusCode:
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    try:
        model_service_pb2_grpc.ModelServiceStub(channel).DeleteModel(
            model_service_pb2.DeleteModelRequest(name="models/absent"), metadata=metadata, timeout=10)
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


def refused(channel, **kw) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        list_models(channel, timeout=5, **kw)
    return info.value


def served_certificate(port: int, ca_file: str, client: tuple[str, str] | None = None) -> bytes:
    """The certificate the gRPC port shows a brand-new connection (a TLS handshake, ALPN h2)."""
    context = ssl.create_default_context(cafile=ca_file)
    context.set_alpn_protocols(["h2"])
    if client:
        context.load_cert_chain(*client)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def pki(tmp_path):
    ca = CA()
    folder = tmp_path / "tls"
    folder.mkdir()
    cert, key = ca.server_files(folder, "server-one")
    tokens = tmp_path / "tokens"
    tokens.write_text("admin a-token\npredict p-token\n")
    return dict(ca=ca, ca_file=ca.write(folder / "ca.crt"), cert=cert, key=key, folder=folder, tokens=str(tokens))


def test_tls_refuses_plaintext_and_strangers_and_rotates(start_server, pki):
    ca = pki["ca"]
    server = start_server(tls_cert_file=pki["cert"], tls_key_file=pki["key"], auth_tokens_file=pki["tokens"],
                          metrics_tls="true", health_port=0)
    target = server.target
    with tls_channel(target, ca.pem) as good:
        assert list_models(good, "p-token").models == []
        assert refused(good).code() == grpc.StatusCode.UNAUTHENTICATED
    with grpc.insecure_channel(target) as plain:
        assert refused(plain, token="p-token").code() == grpc.StatusCode.UNAVAILABLE
    with tls_channel(target, CA("another CA").pem) as stranger:
        assert refused(stranger, token="p-token").code() == grpc.StatusCode.UNAVAILABLE

    # Rotation: new files, same paths. A connection opened before keeps working;
    # a new one is shown the new certificate.
    kept = tls_channel(target, ca.pem)
    list_models(kept, "p-token")
    assert common_name(served_certificate(server.port, pki["ca_file"])) == "server-one"
    time.sleep(0.05)     # a distinct mtime even on coarse file systems
    ca.server_files(pki["folder"], "server-two")
    assert common_name(served_certificate(server.port, pki["ca_file"])) == "server-two"
    list_models(kept, "p-token")
    kept.close()

    # A new CA: clients that trust only the old one are refused from then on.
    new_ca = CA("rotated CA")
    cert, key = new_ca.issue("server-three", dns=["localhost"], ips=["127.0.0.1"])
    write_pair(pki["folder"], cert, key)
    with tls_channel(target, ca.pem) as old_trust:
        assert refused(old_trust, token="p-token").code() == grpc.StatusCode.UNAVAILABLE
    with tls_channel(target, new_ca.pem) as new_trust:
        assert list_models(new_trust, "p-token").models == []

    # A half-done rotation (a certificate without its key) is not taken.
    half, _ = new_ca.issue("server-four", dns=["localhost"], ips=["127.0.0.1"])
    write_file(pki["cert"], half)
    with tls_channel(target, new_ca.pem) as still:
        assert list_models(still, "p-token").models == []
    new_ca_file = new_ca.write(pki["folder"] / "new-ca.crt")
    assert common_name(served_certificate(server.port, new_ca_file)) == "server-three"

    # Metrics over TLS (the rotated certificate there too), refusals counted.
    context = ssl.create_default_context(cafile=new_ca_file)
    silent = socket.create_connection(("127.0.0.1", server.metrics_port))   # connects, never shakes hands
    with urllib.request.urlopen(f"https://localhost:{server.metrics_port}/metrics", context=context,
                                timeout=10) as response:
        text = response.read().decode()
    silent.close()
    assert 'explaind_rejected_calls_total{reason="unauthenticated"} 1.0' in text
    assert 'grpc_code="UNAUTHENTICATED"' in text
    with pytest.raises((OSError, http.client.HTTPException)):       # plain HTTP on the TLS port: no answer
        urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5).read()

    # The plaintext health port: probes get SERVING, nothing else is served there.
    assert server.health_port
    with grpc.insecure_channel(f"127.0.0.1:{server.health_port}") as probe:
        reply = health_pb2_grpc.HealthStub(probe).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert refused(probe, token="a-token").code() == grpc.StatusCode.UNIMPLEMENTED
        with pytest.raises(grpc.RpcError) as info:      # hostile bytes there too: a clean status
            probe.unary_unary("/grpc.health.v1.Health/Check")(b"\xff\xff\xff", timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_mutual_tls_maps_certificates_to_roles(start_server, pki, tmp_path):
    ca = pki["ca"]
    identities = tmp_path / "identities"
    identities.write_text("admin spiffe://cluster/ns/ml/sa/deployer\npredict reader.example\n"
                          "predict CN=subject-only,O=explaind tests\n")
    server = start_server(tls_cert_file=pki["cert"], tls_key_file=pki["key"], tls_client_ca_file=pki["ca_file"],
                          auth_client_identities_file=str(identities), auth_tokens_file=pki["tokens"])
    target = server.target
    deployer = ca.issue("deployer", uris=["spiffe://cluster/ns/ml/sa/deployer"], client=True)
    reader = ca.issue("reader", dns=["reader.example"], client=True)
    subject_only = ca.issue("subject-only", client=True)
    stranger = ca.issue("stranger", dns=["stranger.example"], client=True)
    outsider = CA("other CA").issue("deployer", uris=["spiffe://cluster/ns/ml/sa/deployer"], client=True)

    with tls_channel(target, ca.pem) as no_cert:         # mTLS: the handshake needs a client certificate
        assert refused(no_cert, token="a-token").code() == grpc.StatusCode.UNAVAILABLE
    with tls_channel(target, ca.pem, outsider) as channel:
        assert refused(channel, token="a-token").code() == grpc.StatusCode.UNAVAILABLE
    with tls_channel(target, ca.pem, deployer) as channel:
        assert delete_model(channel) == grpc.StatusCode.NOT_FOUND            # admin: reaches the servicer
    with tls_channel(target, ca.pem, reader) as channel:
        assert list_models(channel).models == []
        assert delete_model(channel) == grpc.StatusCode.PERMISSION_DENIED
        assert delete_model(channel, "a-token") == grpc.StatusCode.NOT_FOUND  # a token may raise the role
        assert delete_model(channel, "wrong") == grpc.StatusCode.UNAUTHENTICATED
    with tls_channel(target, ca.pem, subject_only) as channel:
        assert list_models(channel).models == []
        assert delete_model(channel) == grpc.StatusCode.PERMISSION_DENIED
    with tls_channel(target, ca.pem, stranger) as channel:
        error = refused(channel)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED and "has no role" in error.details()
        assert list_models(channel, "p-token").models == []

    # The SDK and the CLI take the same files.
    files = {}
    for name, (cert, key) in {"reader": reader, "deployer": deployer}.items():
        files[name] = write_pair(tmp_path, cert, key, name)
    with Client(target, tls_ca_file=pki["ca_file"], tls_cert_file=files["reader"][0],
                tls_key_file=files["reader"][1]) as client:
        assert client.list_models() == []
        with pytest.raises(grpc.RpcError) as info:
            client.delete_model("absent")
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with Client(target, tls_ca_file=pki["ca_file"], tls_cert_file=files["reader"][0],
                tls_key_file=files["reader"][1], token="a-token") as client:
        with pytest.raises(grpc.RpcError) as info:
            client.delete_model("absent")
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
    token_file = tmp_path / "token"
    token_file.write_text("a-token\n")
    base = [sys.executable, "-m", "explaind.server.main", "models"]
    tls = ["--target", target, "--tls-ca-file", pki["ca_file"], "--tls-cert-file", files["reader"][0],
           "--tls-key-file", files["reader"][1]]
    env = {k: v for k, v in os.environ.items() if k != "EXPLAIND_TOKEN"}
    run = subprocess.run(base + ["list"] + tls, capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    run = subprocess.run(base + ["delete", "absent"] + tls, capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 1 and "PERMISSION_DENIED" in run.stderr
    run = subprocess.run(base + ["delete", "absent"] + tls + ["--token-file", str(token_file)],
                         capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 1 and "NOT_FOUND" in run.stderr, run.stderr
    run = subprocess.run(base + ["delete", "absent"] + tls, capture_output=True, text=True, timeout=120,
                         env=dict(env, EXPLAIND_TOKEN="a-token"))
    assert "NOT_FOUND" in run.stderr, run.stderr
    run = subprocess.run(base + ["list", "--target", target, "--tls-ca-file", str(tmp_path / "missing.crt")],
                         capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 2 and "missing.crt" in run.stderr


def test_plain_client_with_token_on_loopback(start_server, pki):
    """Tokens work without TLS too (loopback, or TLS ended by a sidecar)."""
    server = start_server(auth_tokens_file=pki["tokens"])
    with Client(server.target, token="p-token") as client:
        assert client.list_models() == []
    with Client(server.target) as client:
        with pytest.raises(grpc.RpcError) as info:
            client.list_models()
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
