"""--allowed-uri-prefix: the only places an upload may make the daemon read.

Every URI a request names (the SavedModel's artifact_uri, each data set URI,
the search config's contentsDeltaUri) and everything reached from it (the
files a glob or a folder expands to, explanation_metadata.json beside the
model, every file inside a local SavedModel folder) must lie under one of the
prefixes. A refusal is PERMISSION_DENIED naming the request field.

Matching is by whole path segments ("/data" covers "/data/x", not
"/database"), after normalising:
  - local paths and file:// URLs (percent-decoded, host empty or localhost)
    become absolute real paths: "..", "." and "//" are resolved and every
    symlink is followed, so a link inside a prefix that leads out of it is
    refused, and what is opened is that real path, not the name given;
  - other URLs (s3://, gs://, ...) are compared as scheme, bucket and path
    segments after one percent-decoding, and refused outright if they hold
    "." or ".." or empty segments, a backslash, a still-encoded sequence
    (double encoding), user info or a port, since a storage backend might
    resolve those in ways this check would not see;
  - chained fsspec URLs ("a::b") and scheme-like strings without "://"
    ("data:...") are refused.
Glob characters (* ? [) may appear only after a prefix's own segments; the
matches are checked again one by one.

The policy is process-wide (`install`), like the process's own file
permissions: set once from the settings at start, consulted wherever a URI is
opened. Without prefixes nothing is restricted (the embedded default).
"""
from __future__ import annotations

import dataclasses
import os
import re
from urllib.parse import unquote, urlsplit

from ..errors import PermissionDenied

GLOB_CHARS = "*?["
_ENCODED = re.compile(r"%[0-9a-fA-F]{2}")
_LOCAL_SCHEMES = ("file", "local")


@dataclasses.dataclass(frozen=True)
class Location:
    """A URI taken apart: local (scheme "") with an absolute real path, or remote."""
    scheme: str
    netloc: str
    segments: tuple[str, ...]

    @property
    def local(self) -> bool:
        return self.scheme == ""

    def uri(self) -> str:
        path = "/".join(self.segments)
        return "/" + path if self.local else f"{self.scheme}://{self.netloc}/{path}".rstrip("/")

    def within(self, prefix: "Location") -> bool:
        n = len(prefix.segments)
        return (self.scheme, self.netloc) == (prefix.scheme, prefix.netloc) and self.segments[:n] == prefix.segments


class RefusedUri(ValueError):
    pass


def locate(uri: str) -> Location:
    """The normalised location of `uri`; RefusedUri for forms that are not allowed."""
    if not isinstance(uri, str) or not uri.strip():
        raise RefusedUri("the uri is empty")
    if "\x00" in uri or any(ord(c) < 0x20 for c in uri):
        raise RefusedUri("the uri holds control characters")
    if "::" in uri:
        raise RefusedUri("chained URLs (a::b) are not allowed")
    scheme, sep, rest = uri.partition("://")
    if not sep:
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", uri):
            raise RefusedUri("a scheme needs '://'")
        return _local(uri)
    scheme = scheme.lower()
    if not re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme):
        raise RefusedUri("not a valid URL scheme")
    if scheme in _LOCAL_SCHEMES:
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise RefusedUri("file:// URLs must name a local path (file:///path)")
        if parts.query or parts.fragment:
            raise RefusedUri("file:// URLs take no query or fragment")
        return _local(unquote(parts.path))
    return _remote(scheme, rest)


def _local(path: str) -> Location:
    real = os.path.realpath(os.path.abspath(os.path.expanduser(path)))
    return Location("", "", tuple(s for s in real.split("/") if s))


def _remote(scheme: str, rest: str) -> Location:
    netloc, _, path = rest.partition("/")
    if not netloc or "@" in netloc or ":" in netloc:
        raise RefusedUri("the URL needs a bucket (host) without user info or port")
    decoded = unquote(path)
    if _ENCODED.search(decoded):
        raise RefusedUri("the URL is percent-encoded twice")
    if "\\" in decoded:
        raise RefusedUri("the URL holds a backslash")
    segments = decoded.split("/")
    if segments and segments[-1] == "":
        segments = segments[:-1]                 # one trailing slash: a folder
    if any(s in ("", ".", "..") for s in segments):
        raise RefusedUri("the URL holds '.', '..' or empty ('//') path segments")
    return Location(scheme, netloc.lower(), tuple(segments))


class UriPolicy:
    def __init__(self, prefixes=()):
        self.given: tuple[str, ...] = tuple(p.strip() for p in prefixes if p.strip())   # as configured
        self.prefixes: list[Location] = []
        for prefix in prefixes:
            prefix = prefix.strip()
            if not prefix:
                continue
            if any(c in prefix for c in GLOB_CHARS):
                raise ValueError(f"--allowed-uri-prefix {prefix!r}: no glob characters in a prefix")
            try:
                self.prefixes.append(locate(prefix))
            except RefusedUri as e:
                raise ValueError(f"--allowed-uri-prefix {prefix!r}: {e}") from None

    @property
    def restricted(self) -> bool:
        return bool(self.prefixes)

    def check(self, uri: str, field: str) -> str:
        """The URI to open in place of `uri`: its real path when local, else `uri`
        itself. PermissionDenied(field) when it lies outside every prefix."""
        if not self.restricted:
            return uri
        try:
            location = locate(uri)
        except RefusedUri as e:
            raise PermissionDenied(f"{uri!r} is refused: {e}", field=field) from None
        if not self._allowed(location):
            raise PermissionDenied(f"{uri!r} is outside the allowed URI prefixes (--allowed-uri-prefix)",
                                   field=field)
        return location.uri() if location.local else uri

    def _allowed(self, location: Location) -> bool:
        # A glob character within a prefix's own segments never equals it: refused.
        return any(location.within(prefix) for prefix in self.prefixes)

    def check_tree(self, local_folder: str, field: str) -> None:
        """Every entry under a local folder (a SavedModel) resolves inside a prefix:
        no symlink in it leads out."""
        if not self.restricted or not os.path.isdir(local_folder):
            return
        for root, dirs, files in os.walk(local_folder, followlinks=False):
            for name in dirs + files:
                path = os.path.join(root, name)
                if os.path.islink(path) and not self._allowed(_local(path)):
                    relative = os.path.relpath(path, local_folder)
                    raise PermissionDenied(f"{relative} in {local_folder} is a symlink that leads outside the "
                                           "allowed URI prefixes", field=field)


_policy = UriPolicy()


def install(policy: UriPolicy) -> None:
    global _policy
    _policy = policy


def policy() -> UriPolicy:
    return _policy


def check(uri: str, field: str) -> str:
    """policy().check: the URI to open, or PermissionDenied naming `field`."""
    return _policy.check(uri, field)
