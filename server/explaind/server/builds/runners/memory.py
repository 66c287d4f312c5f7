"""A build process's memory: the limit it runs under and what it uses.

The limit is on resident memory (RSS), sampled by the serving process, not on
address space: TensorFlow and FAISS reserve far more virtual memory than they
touch (measured on the 2-core machine: TensorFlow imported and a small CNN
loaded use 0.8 GB resident for 2.4 GB of address space; CUDA reserves
terabytes), so an RLIMIT_AS loose enough for them bounds nothing, and a
tighter one makes them abort on an allocation they would never have used.
"""
from __future__ import annotations

import os
import re

_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
          "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?)?b?\s*$", re.IGNORECASE)
AUTO_SHARE = 0.8       # of the container's (or machine's) memory, for --build-memory-limit auto
MAX_TEXT = 32


def parse_memory_limit(text: str, available: int | None = None) -> int:
    """--build-memory-limit -> bytes (0: no limit). Accepts bytes, Kubernetes
    quantities (512Mi, 8Gi), decimal units (8G, 8GB) and "auto" (80% of the
    container's memory limit, else of the machine's memory)."""
    value = str(text).strip()
    if value.lower() == "auto":
        total = available if available is not None else memory_available()
        return int(total * AUTO_SHARE)
    match = _SIZE.match(value) if len(value) <= MAX_TEXT else None
    if match is None:
        raise ValueError(f"--build-memory-limit: {text!r} is not a size; use bytes, 512Mi, 8Gi, 8G, auto or 0")
    number, unit = match.groups()
    return int(float(number) * _UNITS[(unit or "").lower()])


def memory_available() -> int:
    """The cgroup's memory limit where one is set (a Kubernetes container), else the machine's memory."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                raw = f.read().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < 2**60:
            return min(int(raw), _machine_memory())
    return _machine_memory()


def _machine_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (0 once it is gone)."""
    total = 0
    pending = [pid]
    seen = set()
    while pending:
        p = pending.pop()
        if p in seen:
            continue
        seen.add(p)
        total += _rss(p)
        pending += child_pids(p)
    return total


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def child_pids(pid: int) -> list[int]:
    out = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            continue
    return out


def format_bytes(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"
