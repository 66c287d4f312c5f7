"""Remote text data files copied once to local disk for the build.

JSONL, CSV and TFRecord files must be read whole to be counted (the count
drives the progress report) and then again to be embedded: from s3:// or
gs:// that would be two downloads. Each such file is copied once into a
scratch folder instead, as long as the copies fit in half of that disk's
free space and in `max_bytes` (--stage-data-max-gb: a Kubernetes emptyDir's
sizeLimit is not what the disk reports free); what does not fit is read from
the store twice, as before.
Errors raised while the staged files are read name the original URLs.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
from typing import Iterator

import fsspec

from ..errors import InvalidArgument
from .readers.formats import format_of
from .readers import DataPath

log = logging.getLogger(__name__)
READ_TWICE = {"jsonl", "csv", "tfrecord"}
DISK_SHARE = 0.5


def is_remote(path: str) -> bool:
    protocol, sep, _ = str(path).partition("://")
    return bool(sep) and protocol not in ("file", "local")


@contextlib.contextmanager
def staged_locally(paths: list[str], scratch: str, max_bytes: int) -> Iterator[list[str]]:
    budget = min(int(shutil.disk_usage(scratch).free * DISK_SHARE), max_bytes)
    staged: list[str] = []
    sources: dict[str, str] = {}
    for i, path in enumerate(paths):
        if not (is_remote(path) and format_of(path) in READ_TWICE):
            staged.append(path)
            continue
        fs, remote = fsspec.core.url_to_fs(path)
        size = fs.size(remote) or 0
        if size > budget:
            log.info("data file too large to stage on local disk; reading it twice", extra={"path": str(path)})
            staged.append(path)
            continue
        local = os.path.join(scratch, f"{i:05d}-{os.path.basename(remote)}")
        fs.get_file(remote, local)
        budget -= size
        copy = DataPath(local)
        copy.field = getattr(path, "field", None)
        copy.data_format = getattr(path, "data_format", None)
        staged.append(copy)
        sources[local] = str(path)
    try:
        yield staged
    except InvalidArgument as e:
        message = e.message
        for local, source in sources.items():
            message = message.replace(local, source)
        raise type(e)(message, field=e.field) from None
