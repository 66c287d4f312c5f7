"""What the daemon needs to be exposed safely, built from its settings.

    tls.py        TLS and mutual TLS from rotating files (gRPC, metrics, HTTP fronts)
    roles.py      the role each gRPC method needs (admin, predict, open)
    identities.py bearer tokens and client-certificate identities -> roles
    auth.py       the decision (Authorizer), asked by admission for every call
    decoding.py   undecodable requests -> INVALID_ARGUMENT
    registry.py   which methods the server registers, checked against roles.py
    uris.py       --allowed-uri-prefix, consulted wherever a URI is opened

docs/security.md is the operator's guide: threat model and every setting.
"""
from __future__ import annotations

import logging
import ssl
import sys

import grpc

from ..config import SettingsError
from .auth import Authorizer
from .decoding import DecodeInterceptor
from .identities import IdentityRoles, TokenRoles
from .registry import RecordingServer
from .roles import uncovered
from .tls import ReloadingCertificates, TlsFiles
from . import uris

log = logging.getLogger(__name__)
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


class Security:
    """One per daemon: the settings' TLS, credentials and URI policy, checked at start."""

    def __init__(self, settings):
        self.settings = settings
        try:
            files = TlsFiles.of(settings)
            self.certificates = ReloadingCertificates(files) if files else None
            identities = None
            if settings.auth_client_identities_file:
                if self.certificates is None or not self.certificates.mutual:
                    raise ValueError("--auth-client-identities-file needs mutual TLS (--tls-client-ca-file)")
                identities = IdentityRoles(settings.auth_client_identities_file)
            tokens = TokenRoles(settings.auth_tokens_file) if settings.auth_tokens_file else None
            if settings.metrics_tls and self.certificates is None:
                raise ValueError("--metrics-tls needs --tls-cert-file and --tls-key-file")
            self.uri_policy = uris.UriPolicy(settings.allowed_uri_prefix.split(","))
        except (OSError, ValueError, ssl.SSLError) as e:
            raise SettingsError(str(e)) from None
        self.authorizer = Authorizer(tokens, identities, control_disabled=settings.disable_model_uploads)
        uris.install(self.uri_policy)
        self.health_server: grpc.aio.Server | None = None
        self.health_port = 0

    def add_port(self, server, address: str) -> int:
        if self.certificates is None:
            return server.add_insecure_port(address)
        return server.add_secure_port(address, self.certificates.grpc_credentials())

    def start_metrics_server(self, port: int, registry):
        from ..metrics import start_metrics_server
        if self.settings.metrics_tls:
            from .metrics_tls import start_tls_metrics_server
            return start_tls_metrics_server(port, registry, self.certificates.ssl_context())
        return start_metrics_server(port, registry)

    async def start_health_port(self, health_servicer, options=()) -> None:
        """--health-port: grpc.health.v1 alone, in plaintext, for probes that cannot
        speak TLS (the kubelet's gRPC probe). It answers as the main port does."""
        if self.settings.health_port < 0:
            return
        from grpc_health.v1 import health_pb2_grpc
        self.health_server = grpc.aio.server(interceptors=[DecodeInterceptor()], options=list(options))
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, self.health_server)
        address = f"{self.settings.host}:{self.settings.health_port}"
        self.health_port = self.health_server.add_insecure_port(address)
        if self.health_port == 0:
            raise RuntimeError(f"cannot listen on {address} (--health-port)")
        await self.health_server.start()

    async def stop(self) -> None:
        if self.health_server is not None:
            await self.health_server.stop(0)

    def check_methods(self, server: RecordingServer) -> None:
        """Logs an error for every registered method the role table lacks (they are refused)."""
        for method in uncovered(server.registered):
            log.error("%s has no entry in security/roles.py: every call of it is refused", method)
        for service in server.undescribed:
            log.error("service %s is registered without a method list or descriptors: its methods cannot "
                      "be checked against security/roles.py", service)
        if server.unnamed_handlers:
            log.error("%d generic handlers do not name their service; their methods are refused unless "
                      "security/roles.py lists them", server.unnamed_handlers)

    def warn_if_exposed(self, port: int) -> None:
        """Loudly, on stderr and in the log: a daemon reachable beyond loopback without auth."""
        s = self.settings
        if s.host.strip() in LOOPBACK_HOSTS:
            return
        mutual = self.certificates is not None and self.certificates.mutual
        problems = []
        if not self.authorizer.enabled and not mutual:
            problems.append("no authentication (--auth-tokens-file, or mutual TLS): anyone who reaches the port "
                            "may upload a model, which runs its code in this process, and delete models")
        if self.authorizer.tokens is not None and self.certificates is None:
            problems.append("bearer tokens travel in clear text (no --tls-cert-file)")
        if not problems:
            return
        if not self.uri_policy.restricted and not s.disable_model_uploads:
            problems.append("uploads may read any file this process can (no --allowed-uri-prefix)")
        message = (f"explaind is listening on {s.host}:{port} beyond loopback with " + "; ".join(problems)
                   + ". See docs/security.md.")
        log.warning(message)
        sys.stderr.write("WARNING: " + message + "\n")
        sys.stderr.flush()
