"""Make a model artifact readable by TensorFlow: local folders and file://
URLs are used in place; any other fsspec URL is copied to a local temp
folder first (TensorFlow's own file systems do not cover s3://, memory://...).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from urllib.parse import unquote, urlparse

from explaind.server.errors import InvalidArgument
from explaind.server.security import uris as allowed_uris

ARTIFACT_FIELD = "model.artifact_uri"


def local_path(uri: str) -> str | None:
    """The local path of a plain path or file:// URL, else None."""
    if "://" not in uri:
        return os.path.abspath(os.path.expanduser(uri))
    if uri.startswith("file://"):
        return unquote(urlparse(uri).path)
    return None


class LocalArtifact:
    """A context-free handle: `.path` is local; `.cleanup()` removes a copy."""

    def __init__(self, path: str, tmpdir: str | None):
        self.path = path
        self._tmpdir = tmpdir

    def cleanup(self) -> None:
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None


def fetch(uri: str, field: str = ARTIFACT_FIELD) -> LocalArtifact:
    """A local copy of `uri` (a folder or a single file such as model.keras)."""
    if not uri:
        raise InvalidArgument("artifact_uri is empty", field=field)
    uri = allowed_uris.check(uri, field)      # under --allowed-uri-prefix: a local one's real path
    path = local_path(uri)
    if path is not None:
        if not os.path.exists(path):
            raise InvalidArgument(f"{uri} does not exist", field=field)
        allowed_uris.policy().check_tree(path, field)
        return LocalArtifact(path, None)
    import fsspec

    try:
        fs, remote = fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError) as e:
        raise InvalidArgument(f"cannot open {uri}: {e}", field=field) from None
    tmpdir = tempfile.mkdtemp(prefix="explaind-model-")
    try:
        remote = remote.rstrip("/")
        if not fs.exists(remote):
            raise InvalidArgument(f"{uri} does not exist", field=field)
        target = os.path.join(tmpdir, os.path.basename(remote) or "model")
        if fs.isdir(remote):
            fs.get(remote + "/", target + "/", recursive=True)
        else:
            fs.get(remote, target)
        return LocalArtifact(target, tmpdir)
    except InvalidArgument:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    except Exception as e:  # any backend error: permissions, network
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise InvalidArgument(f"cannot copy {uri}: {e}", field=field) from None
