"""Every call gets the role its method needs, or is refused.

Credentials: `authorization: Bearer <token>` (--auth-tokens-file) and, under
mutual TLS, the verified client certificate (--auth-client-identities-file).
A caller holds the highest role its credentials give.

    no credentials, or a token nobody issued          UNAUTHENTICATED
    a role below the method's, or a certificate       PERMISSION_DENIED
      whose identity has no role
    a method the role table has no entry for          PERMISSION_DENIED (for everyone)
    an admin method with --disable-model-uploads      PERMISSION_DENIED (for everyone)

`Authorizer` decides, for any surface: admission (admission.py) asks it
for every gRPC call, and for every REST call with the gRPC method its route
stands for. Refusals are logged and counted like any call, and also in
explaind_rejected_calls_total{reason="unauthenticated" | "permission_denied"}.
Messages never quote a token.
"""
from __future__ import annotations

from typing import Iterable

import grpc

from ..admission import Refusal
from .identities import IdentityRoles, TokenRoles
from .roles import ADMIN, METHOD_ROLES, OPEN, Role, required_role

MAX_TOKEN_CHARS = 4096


def _unauthenticated(message: str) -> Refusal:
    return Refusal(grpc.StatusCode.UNAUTHENTICATED, message, "unauthenticated")


def _denied(message: str) -> Refusal:
    return Refusal(grpc.StatusCode.PERMISSION_DENIED, message, "permission_denied")


class Authorizer:
    def __init__(self, tokens: TokenRoles | None = None, identities: IdentityRoles | None = None,
                 control_disabled: bool = False, table: dict = METHOD_ROLES):
        self.tokens = tokens
        self.identities = identities
        self.control_disabled = control_disabled
        self.table = table

    @property
    def enabled(self) -> bool:
        """Without credentials configured every caller may do everything (the embedded default)."""
        return self.tokens is not None or self.identities is not None

    def check(self, method_path: str, authorization: Iterable = (), certificate_names: set[str] = frozenset(),
              certificate_shown: str = "") -> Refusal | None:
        """None when the call may go ahead. `authorization`: the values of the
        authorization header; `certificate_names`: the verified client
        certificate's subject, CN and SANs (see peer_certificate_names)."""
        needed = required_role(method_path, self.table)
        if needed is None:
            return _denied(f"{method_path} has no access rule on this server, so nobody may call it")
        if needed is ADMIN and self.control_disabled:
            return _denied("model control is turned off on this server (--disable-model-uploads): upload, "
                           "update and delete through an admin replica")
        if needed is OPEN or not self.enabled:
            return None
        caller, refusal = self.role_of(list(authorization), certificate_names, certificate_shown)
        if refusal is not None:
            return refusal
        if caller < needed:
            return _denied(f"{method_path} needs the {needed.name.lower()} role; this caller has "
                           f"{caller.name.lower()}")
        return None

    def role_of(self, authorization: list, certificate_names: set[str],
                certificate_shown: str = "") -> tuple[Role | None, Refusal | None]:
        roles = []
        if self.tokens is not None and authorization:
            token = _bearer(authorization)
            if token is None:
                return None, _unauthenticated("the authorization metadata must be one 'Bearer <token>'")
            role = self.tokens.role_of(token)
            if role is None:
                return None, _unauthenticated("the bearer token is not one this server knows")
            roles.append(role)
        if self.identities is not None and certificate_names:
            role = self.identities.role_of(certificate_names)
            if role is not None:
                roles.append(role)
            elif not roles:
                return None, _denied(f"client certificate {certificate_shown or '?'} has no role on this server")
        if roles:
            return max(roles), None
        return None, _unauthenticated("no credentials: send 'authorization: Bearer <token>'"
                                      + (" or a client certificate" if self.identities is not None else ""))


def _bearer(values: list) -> str | None:
    if len(values) != 1:
        return None
    value = values[0].decode("utf-8", "replace") if isinstance(values[0], bytes) else str(values[0])
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_CHARS:
        return None
    return token


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def peer_certificate_names(context) -> tuple[set[str], str]:
    """(the verified client certificate's subject, CN and SANs; the subject to show), from a gRPC call."""
    auth = context.auth_context() or {}
    names = {_text(v) for key in ("x509_subject", "x509_common_name", "x509_subject_alternative_name")
             for v in auth.get(key, ())}
    names.discard("")
    shown = (auth.get("x509_subject") or auth.get("x509_common_name") or [b""])[0]
    return names, repr(_text(shown))


# Python's names in a decoded peer certificate -> the RFC 2253 short names gRPC's subject uses.
_SHORT_NAMES = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C",
                "stateOrProvinceName": "ST", "localityName": "L", "domainComponent": "DC", "userId": "UID",
                "emailAddress": "emailAddress"}


def http_certificate_names(peercert: dict | None) -> tuple[set[str], str]:
    """The same (names, subject to show) as peer_certificate_names, from an HTTP
    connection's verified client certificate (ssl's getpeercert() form): the
    subject written as gRPC writes it (RFC 2253 order, "CN=...,O=..."), its CN
    and its subject alternative names."""
    if not peercert:
        return set(), "''"
    rdns = [pair for rdn in peercert.get("subject", ()) for pair in rdn]
    subject = ",".join(f"{_SHORT_NAMES.get(key, key)}={value}" for key, value in reversed(rdns))
    names = {subject} | {value for key, value in rdns if key == "commonName"}
    names |= {value for _kind, value in peercert.get("subjectAltName", ())}
    names.discard("")
    return names, repr(subject)


def refusing_handler(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """`handler`'s kind, answering PERMISSION_DENIED whatever the request."""
    async def refuse(request, context):
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, message)

    async def refuse_stream(request, context):
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, message)
        yield  # pragma: no cover - never reached; makes this an async generator

    kind = next(k for k in ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
                if getattr(handler, k) is not None)
    return handler._replace(**{kind: refuse_stream if handler.response_streaming else refuse})
