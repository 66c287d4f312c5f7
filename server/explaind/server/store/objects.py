"""A key/value view of the store (a local folder or any fsspec URL).

Every record and artifact of explaind goes through this class, so the rest of
the server never deals with paths, protocols or atomicity. Guarantees:
- local folder: `write` is atomic (temp file + rename) and `create` is atomic
  and exclusive (temp file + hard link, which fails if the key exists);
- object stores (s3://, gs://): a PUT replaces an object atomically; `create`
  uses fsspec's conditional create (If-None-Match on S3 and GCS where the
  filesystem implements it, else check-then-write, which can race).
Every request is retried on transient failures and timed (retry.py): a store
that stays unreachable raises StoreUnavailable, one that refuses StoreError.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import os
import posixpath
import tempfile
import uuid

import fsspec
from fsspec.core import url_to_fs

from .retry import Observe, StoreError, StoreRetry

# A local create tries again this often when its folder vanishes under it (and a local
# delete when a create writes into the folder it is removing).
LOCAL_CREATE_TRIES = 3


class KeyExists(Exception):
    """`create` found the key already present."""


class ObjectStore:
    def __init__(self, url: str, retry: StoreRetry = StoreRetry(), timeout_s: float = 0.0,
                 observe: Observe | None = None):
        """`timeout_s`: limit of one request to an object store (0: the client's default).
        `observe(operation, seconds, error or None)`: called after every attempt."""
        if not 0 <= timeout_s <= 3600:       # NaN fails too
            raise ValueError(f"store timeout (--store-timeout-seconds) must be 0 to 3600, got {timeout_s}")
        self.url = url
        self.retry = retry
        self.observe = observe
        self.fs, root = url_to_fs(url, **_client_options(url, timeout_s))
        if "s3" in _protocols(self.fs):
            self.fs.retries = 1      # s3fs's own retry loop (an attribute, not an option)
        self.root = root.rstrip("/")
        self.is_local = "file" in _protocols(self.fs)
        if self.is_local:
            os.makedirs(self.root, exist_ok=True)

    def _call(self, operation: str, key: str, request, *args, **kwargs):
        return self.retry.call(operation, key, functools.partial(request, *args, **kwargs), self.observe)

    def path(self, key: str) -> str:
        return posixpath.join(self.root, key) if key else self.root

    def uri(self, key: str) -> str:
        """A URL other tools (fsspec, TensorFlow) can open."""
        path = self.path(key)
        return path if self.is_local else self.fs.unstrip_protocol(path)

    def read(self, key: str) -> bytes | None:
        self._forget_listings()
        try:
            return self._call("read", key, self.fs.cat_file, self.path(key))
        except FileNotFoundError:
            return None

    def write(self, key: str, data: bytes) -> None:
        path = self.path(key)
        if self.is_local:
            self._call("write", key, lambda: os.replace(self._local_temp(path, data), path))
        else:
            self._call("write", key, self.fs.pipe_file, path, data)

    def create(self, key: str, data: bytes) -> None:
        """Writes `data` only if `key` does not exist yet; else raises KeyExists."""
        path = self.path(key)
        if self.is_local:
            for attempt in range(LOCAL_CREATE_TRIES):
                try:
                    return self._create_local(key, path, data)
                except FileNotFoundError:
                    # A concurrent delete_prefix removed the folder between its makedirs and
                    # the link (an endpoint's lock taken while the endpoint is deleted): again.
                    if attempt == LOCAL_CREATE_TRIES - 1:
                        raise
        try:
            self._call("create", key, self.fs.pipe_file, path, data, mode="create")
        except FileExistsError:
            # A retried create whose first attempt landed (its answer lost) finds its own bytes.
            if self.read(key) == data:
                return
            raise KeyExists(key) from None

    def exists(self, key: str) -> bool:
        self._forget_listings()
        return self._call("exists", key, self.fs.exists, self.path(key))

    def delete(self, key: str) -> None:
        try:
            self._call("delete", key, self.fs.rm_file, self.path(key))
        except FileNotFoundError:
            pass

    def delete_prefix(self, prefix: str) -> None:
        path = self.path(prefix)
        for attempt in range(LOCAL_CREATE_TRIES):
            if not self.exists(prefix):
                return
            try:
                return self._call("delete", prefix, self.fs.rm, path, recursive=True)
            except FileNotFoundError:
                return        # a retry after an attempt that did delete it
            except StoreError as e:
                # A local folder that a concurrent create wrote into while it was being removed
                # (an endpoint's lock taken while the endpoint is deleted): remove it again.
                if not (self.is_local and isinstance(e.__cause__, OSError)
                        and e.__cause__.errno == errno.ENOTEMPTY and attempt < LOCAL_CREATE_TRIES - 1):
                    raise

    def list(self, prefix: str) -> list[str]:
        """Names directly under `prefix` (files and folders), sorted."""
        path = self.path(prefix)
        self._forget_listings()
        try:
            entries = self._call("list", prefix, self.fs.ls, path, detail=False)
        except FileNotFoundError:
            return []
        return sorted(posixpath.basename(e.rstrip("/")) for e in entries)

    def versions(self, prefix: str) -> dict[str, tuple]:
        """Every object under `prefix` (recursively) -> a version signature that changes
        when the object is rewritten (ETag or modification time, with the size). One
        listing request per 1000 objects on S3/GCS, instead of one read per object."""
        path = self.path(prefix)
        self._forget_listings()
        try:
            found = self._call("list", prefix, self.fs.find, path, detail=True)
        except FileNotFoundError:
            return {}
        out = {}
        for full, info in found.items():
            key = posixpath.relpath(self.fs._strip_protocol(full), self.root)
            stamp = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified") \
                or info.get("updated") or info.get("generation")
            # A local rewrite is a new inode (temp file + rename), whatever the clock's grain.
            out[key] = (str(stamp), info.get("size"), info.get("ino"))
        return out

    def upload_dir(self, local_dir: str, prefix: str) -> int:
        """Copies a local folder's files under `prefix`; returns the bytes copied."""
        total = 0
        if self.is_local:
            os.makedirs(self.path(prefix), exist_ok=True)
        for name in sorted(os.listdir(local_dir)):
            src = os.path.join(local_dir, name)
            if os.path.isfile(src):
                total += os.path.getsize(src)
                key = f"{prefix}/{name}"
                self._call("upload", key, self.fs.put_file, src, self.path(key))
        return total

    def download_dir(self, prefix: str, local_dir: str) -> None:
        os.makedirs(local_dir, exist_ok=True)
        for name in self.list(prefix):
            self.download(f"{prefix}/{name}", os.path.join(local_dir, name))

    def download(self, key: str, local_path: str) -> None:
        """One object to a local file. A local store's files are immutable once
        written (build files, segments), so they are hard-linked, not copied,
        where the cache shares their file system: a 50 GB vector segment is
        not stored twice on one disk."""
        if self.is_local:
            try:
                os.link(self.path(key), local_path)
                return
            except OSError:
                pass           # another file system (or no links there): copied
        self._call("download", key, self.fs.get_file, self.path(key), local_path)

    def _forget_listings(self) -> None:
        # Object-store filesystems cache listings; other replicas change the store
        # behind our back, so every question about what exists asks the store again.
        # (s3fs answers "not found" from a cached listing of the parent, so a listing
        # cached anywhere, by a find() say, could hide a record published since.)
        if not self.is_local:
            self.fs.invalidate_cache()

    def _create_local(self, key: str, path: str, data: bytes) -> None:
        tmp = self._local_temp(path, data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise KeyExists(key) from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _local_temp(self, path: str, data: bytes) -> str:
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".tmp-{uuid.uuid4().hex[:8]}-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return tmp


def _client_options(url: str, timeout_s: float) -> dict:
    """Filesystem options: for S3, a time limit per request and no retries of botocore's
    own (nor of s3fs's, see __init__), since StoreRetry retries, counts and bounds them all."""
    protocol = url.split("://", 1)[0] if "://" in url else "file"
    if protocol not in ("s3", "s3a"):
        return {}
    config = {"retries": {"total_max_attempts": 1}}
    if timeout_s > 0:
        config.update(connect_timeout=timeout_s, read_timeout=timeout_s)
    return {"config_kwargs": config}


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)
