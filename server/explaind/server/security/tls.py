"""TLS for the gRPC port, the metrics port and any HTTP front, from one set of files.

--tls-cert-file / --tls-key-file: the server's certificate chain and key (PEM);
--tls-client-ca-file: clients must present a certificate signed by this CA
(mutual TLS). The files are looked at again for every new connection and
re-read when they changed, so a rotated certificate (cert-manager renewing a
Secret, an operator replacing the files) is served to new connections without
a restart; connections already open keep the certificate they started with.
A half-written rotation (a certificate that does not match the key) is not
taken: the previous material stays until the files agree again.

    certs = ReloadingCertificates(TlsFiles.of(settings))
    server.add_secure_port(address, certs.grpc_credentials())   # gRPC
    certs.ssl_context()                                         # http.server, aiohttp, uvicorn...
"""
from __future__ import annotations

import dataclasses
import logging
import os
import ssl
import threading

import grpc

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    cert: str
    key: str
    client_ca: str = ""

    @classmethod
    def of(cls, settings) -> "TlsFiles | None":
        """From --tls-cert-file, --tls-key-file, --tls-client-ca-file; None when TLS is off."""
        cert, key, ca = settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file
        if not cert and not key:
            if ca:
                raise ValueError("--tls-client-ca-file needs --tls-cert-file and --tls-key-file")
            return None
        if not (cert and key):
            raise ValueError("--tls-cert-file and --tls-key-file go together")
        return cls(cert, key, ca)

    @property
    def paths(self) -> tuple[str, ...]:
        return (self.cert, self.key) + ((self.client_ca,) if self.client_ca else ())

    def signature(self) -> tuple:
        out = []
        for path in self.paths:
            s = os.stat(path)
            out.append((s.st_ino, s.st_size, s.st_mtime_ns))
        return tuple(out)


@dataclasses.dataclass(frozen=True)
class Material:
    cert: bytes
    key: bytes
    client_ca: bytes | None
    ssl_context: ssl.SSLContext


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def load_material(files: TlsFiles, alpn: tuple[str, ...] = ()) -> Material:
    """The files' contents and an SSLContext built from them. ssl checks that
    the key matches the certificate; the bytes are read before and after that
    check and must not have changed in between."""
    before = tuple(_read(p) for p in files.paths)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(files.cert, files.key)
    if files.client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=files.client_ca)
    if alpn:
        context.set_alpn_protocols(list(alpn))
    after = tuple(_read(p) for p in files.paths)
    if before != after:
        raise ValueError("the TLS files changed while being read")
    return Material(after[0], after[1], after[2] if files.client_ca else None, context)


class ReloadingCertificates:
    def __init__(self, files: TlsFiles, alpn: tuple[str, ...] = ()):
        self.files = files
        self._alpn = alpn
        self._lock = threading.Lock()
        self._signature = files.signature()
        self._material = load_material(files, alpn)      # bad files fail the start
        self._failed_signature = None

    @property
    def mutual(self) -> bool:
        return bool(self.files.client_ca)

    def current(self) -> Material:
        """The material for a new connection, re-read first when the files changed."""
        try:
            signature = self.files.signature()
        except OSError as e:
            signature = ("unreadable", str(e))
        if signature == self._signature or signature == self._failed_signature:
            return self._material
        with self._lock:
            if signature != self._signature and signature != self._failed_signature:
                try:
                    if signature[0] == "unreadable":
                        raise OSError(signature[1])
                    self._material = load_material(self.files, self._alpn)
                    self._signature = signature
                    log.info("TLS certificate reloaded", extra={"cert": self.files.cert})
                except (OSError, ValueError, ssl.SSLError) as e:
                    # Often a rotation caught half-way (new cert, old key): the next
                    # connection looks again, and the files agree by then.
                    self._failed_signature = signature
                    log.warning("TLS files changed but cannot be used yet; serving the previous "
                                "certificate: %s", e, extra={"cert": self.files.cert})
            return self._material

    # --- gRPC ---
    def _grpc_configuration(self, material: Material):
        return grpc.ssl_server_certificate_configuration([(material.key, material.cert)],
                                                         root_certificates=material.client_ca)

    def grpc_credentials(self) -> grpc.ServerCredentials:
        served = [self._material]

        def fetch():
            # grpc calls this before each new connection's handshake: None keeps the
            # configuration it has. It must never raise.
            try:
                material = self.current()
            except Exception:  # noqa: BLE001
                log.exception("TLS reload failed")
                return None
            if material is served[0]:
                return None
            served[0] = material
            return self._grpc_configuration(material)

        return grpc.dynamic_ssl_server_credentials(self._grpc_configuration(self._material), fetch,
                                                   require_client_authentication=self.mutual)

    # --- anything built on the ssl module ---
    def ssl_context(self) -> ssl.SSLContext:
        """An SSLContext for an HTTP server. Each handshake switches to the
        context of the current files (through the SNI callback, which OpenSSL
        calls for every ClientHello, with or without a server name)."""
        front = load_material(self.files, self._alpn).ssl_context

        def switch(ssl_object, _server_name, _context):
            try:
                ssl_object.context = self.current().ssl_context
            except Exception:  # noqa: BLE001 - keep the front context's certificate
                log.exception("TLS reload failed")
            return None

        front.sni_callback = switch
        return front
