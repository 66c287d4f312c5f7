"""Channels to a daemon: plaintext, TLS, mutual TLS, with or without a bearer token.

    make_channel("explaind.example.com:8500", tls_ca_file="ca.crt", token_file="token")

TLS is on when any TLS file is given or `tls=True` (the system's root CAs
then check the server). The token goes in every call's `authorization:
Bearer <token>` metadata.
"""
from __future__ import annotations

import collections

import grpc

MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()


def read_token(token: str | None = None, token_file: str | None = None) -> str | None:
    if token_file:
        with open(token_file, encoding="utf-8") as f:
            token = f.read()
    token = (token or "").strip()
    return token or None


def make_channel(target: str, *, tls: bool | None = None, tls_ca_file: str | None = None,
                 tls_cert_file: str | None = None, tls_key_file: str | None = None,
                 tls_server_name: str | None = None, token: str | None = None, token_file: str | None = None,
                 options=()) -> grpc.Channel:
    options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
               ("grpc.max_send_message_length", MAX_MESSAGE_BYTES), *options]
    if bool(tls_cert_file) != bool(tls_key_file):
        raise ValueError("a client certificate needs both tls_cert_file and tls_key_file")
    if tls is None:
        tls = bool(tls_ca_file or tls_cert_file)
    if tls:
        if tls_server_name:
            options.append(("grpc.ssl_target_name_override", tls_server_name))
        credentials = grpc.ssl_channel_credentials(root_certificates=_read(tls_ca_file),
                                                   private_key=_read(tls_key_file),
                                                   certificate_chain=_read(tls_cert_file))
        channel = grpc.secure_channel(target, credentials, options=options)
    else:
        channel = grpc.insecure_channel(target, options=options)
    token = read_token(token, token_file)
    if token:
        channel = grpc.intercept_channel(channel, BearerToken(token))
    return channel


class _CallDetails(collections.namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials",
                                                            "wait_for_ready", "compression")),
                   grpc.ClientCallDetails):
    pass


class BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                  grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds `authorization: Bearer <token>` to every call."""

    def __init__(self, token: str):
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, details):
        metadata = [m for m in (details.metadata or ()) if m[0] != "authorization"] + [self._header]
        return _CallDetails(details.method, details.timeout, metadata, details.credentials,
                            getattr(details, "wait_for_ready", None), getattr(details, "compression", None))

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)

    def __repr__(self) -> str:
        return "BearerToken(***)"
