"""Credentials -> roles, from files an operator manages (and may change while running).

One format for bearer tokens (--auth-tokens-file) and client-certificate
identities (--auth-client-identities-file), either
  - a file of lines `<role> <value>` (`#` comments and blank lines skipped), or
  - a folder holding one file per role, named `admin` and `predict`, one value
    per line: a Kubernetes Secret with keys `admin` and `predict` mounted as a
    volume is such a folder.

The files are looked at again at most once a second; a changed set is
reloaded, so rotating a Secret needs no restart. A reload that fails (a file
half-written, a role misspelt) keeps the last good set and logs the error.

Tokens are kept only as SHA-256 digests and compared in constant time against
every known digest; they are never logged.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time

from .roles import Role

log = logging.getLogger(__name__)
CHECK_EVERY_S = 1.0
MAX_FILE_BYTES = 1 << 20


def parse_role_lines(text: str, where: str, role: Role | None = None) -> list[tuple[Role, str]]:
    """`<role> <value>` lines, or bare `<value>` lines when `role` is given (a per-role file)."""
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if role is not None:
            entries.append((role, line))
            continue
        name, _, value = line.partition(" ")
        value = value.strip()
        if not value:
            raise ValueError(f"{where} line {number}: expected '<role> <value>'")
        try:
            entries.append((Role.parse(name), value))
        except ValueError:      # not echoing the word: it may be a token written first
            raise ValueError(f"{where} line {number}: the first word must be admin or predict") from None
    return entries


def _read(path: str) -> str:
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"{path} is larger than {MAX_FILE_BYTES} bytes")
    return data.decode("utf-8")


def load_role_entries(path: str) -> list[tuple[Role, str]]:
    if os.path.isdir(path):
        entries = []
        for name in sorted(os.listdir(path)):
            if name.startswith("."):          # a Secret volume's ..data links
                continue
            try:
                role = Role.parse(name)
            except ValueError:
                raise ValueError(f"{path}/{name}: files in a credentials folder are named admin or predict") \
                    from None
            entries += parse_role_lines(_read(os.path.join(path, name)), f"{path}/{name}", role)
        return entries
    return parse_role_lines(_read(path), path)


def _signature(path: str) -> tuple:
    """Changes whenever the file, or a file of the folder, is replaced or rewritten."""
    def stat(p):
        s = os.stat(p)
        return (p, s.st_ino, s.st_size, s.st_mtime_ns)
    if os.path.isdir(path):
        return tuple(stat(os.path.join(path, n)) for n in sorted(os.listdir(path)) if not n.startswith("."))
    return (stat(path),)


class ReloadingRoles:
    """Values -> roles from `path`, reloaded when the files change."""

    def __init__(self, path: str, kind: str, clock=time.monotonic):
        self.path = path
        self.kind = kind                     # "token" or "identity", for messages
        self._clock = clock
        self._lock = threading.Lock()
        self._checked = 0.0
        self._signature = _signature(path)
        self._entries = self._build(load_role_entries(path))   # a bad file fails the start
        self._failed_signature = None

    def _build(self, entries: list[tuple[Role, str]]):
        return entries

    def _current(self):
        now = self._clock()
        if now - self._checked < CHECK_EVERY_S:
            return self._entries
        with self._lock:
            if now - self._checked < CHECK_EVERY_S:
                return self._entries
            self._checked = now
            try:
                signature = _signature(self.path)
            except OSError as e:
                signature = ("unreadable", str(e))
            if signature in (self._signature, self._failed_signature):
                return self._entries
            try:
                if signature[0] == "unreadable":
                    raise OSError(signature[1])
                self._entries = self._build(load_role_entries(self.path))
                self._signature = signature
                log.info("reloaded %s roles", self.kind, extra={"path": self.path, "count": len(self._entries)})
            except (OSError, ValueError, UnicodeDecodeError) as e:
                self._failed_signature = signature      # logged once per change, not at every check
                log.error("cannot reload %s roles; keeping the previous ones: %s", self.kind, e,
                          extra={"path": self.path})
            return self._entries

    def __len__(self) -> int:
        return len(self._current())


class TokenRoles(ReloadingRoles):
    def __init__(self, path: str, clock=time.monotonic):
        super().__init__(path, "token", clock)

    def _build(self, entries):
        return [(role, hashlib.sha256(token.encode()).digest()) for role, token in entries]

    def role_of(self, token: str) -> Role | None:
        """The role of `token`; every known digest is compared, matching or not."""
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        found = None
        for role, known in self._current():
            if hmac.compare_digest(digest, known) and (found is None or role > found):
                found = role
        return found


class IdentityRoles(ReloadingRoles):
    """Client-certificate identities: an entry matches the certificate's subject
    (as gRPC writes it, RFC 2253, e.g. "CN=client-a,O=acme"), its common name, or any of
    its subject alternative names (DNS, URI such as a SPIFFE id, email, IP)."""

    def __init__(self, path: str, clock=time.monotonic):
        super().__init__(path, "identity", clock)

    def role_of(self, names: set[str]) -> Role | None:
        roles = [role for role, identity in self._current() if identity in names]
        return max(roles) if roles else None
