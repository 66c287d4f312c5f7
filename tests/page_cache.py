"""Cold reads measured (Linux): files put out of the page cache, and the bytes
this process has read from disk. Shared by the read-amplification tests and
bench/bench_disk_reads.py."""
from __future__ import annotations

import mmap
import os
from typing import Iterable


def evict(paths: Iterable[str], mappings: Iterable = ()) -> None:
    """The files' pages out of the page cache. The mappings (np.memmap arrays, or None)
    are dropped first: the kernel keeps pages a process maps."""
    for array in mappings:
        mm = getattr(array, "_mmap", None)
        if mm is not None:
            mm.madvise(mmap.MADV_DONTNEED)
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def read_bytes() -> int:
    """This process's bytes read from disk so far (/proc/self/io); LookupError where the
    kernel does not count them (task I/O accounting off)."""
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("read_bytes:"):
                return int(line.split()[1])
    raise LookupError("no read_bytes in /proc/self/io (needs Linux task I/O accounting)")
