"""A bound on the data set bytes one pass of a build reads (--max-upload-data-gb).

Counted after decompression, so a small .gz that inflates to terabytes (a
decompression bomb) stops at the bound like a large plain file. The recipe
opens a budget around each pass over the data (`read_budget`); every file the
readers open meanwhile (formats.open_binary / open_text) is counted against
it, and the read that goes over raises RESOURCE_EXHAUSTED naming the field.
"""
from __future__ import annotations

import contextlib
import contextvars
import io
from typing import Iterator

from explaind.server.errors import ResourceExhausted

_current: contextvars.ContextVar["ReadBudget | None"] = contextvars.ContextVar("explaind_read_budget", default=None)


class ReadBudget:
    def __init__(self, max_bytes: int, field: str):
        self.max_bytes = max_bytes
        self.field = field
        self.read = 0
        self.exceeded = False

    def take(self, n: int) -> None:
        self.read += n
        if self.read > self.max_bytes:
            self.exceeded = True
            raise self.error()

    def error(self) -> ResourceExhausted:
        return ResourceExhausted(
            f"the data set is larger than {self.max_bytes} bytes (uncompressed), the most one upload may read "
            "(--max-upload-data-gb); split it over several models or raise the limit", field=self.field)


@contextlib.contextmanager
def read_budget(max_bytes: int, field: str) -> Iterator[ReadBudget | None]:
    """Counts what the readers read inside; max_bytes <= 0: no bound."""
    if max_bytes <= 0:
        yield None
        return
    budget = ReadBudget(max_bytes, field)
    token = _current.set(budget)
    try:
        yield budget
    except ResourceExhausted:
        raise
    except Exception:
        # A reader may wrap the budget's error in its own (pyarrow does): the bound is the cause.
        if budget.exceeded:
            raise budget.error() from None
        raise
    finally:
        _current.reset(token)


class _CountingReader(io.RawIOBase):
    def __init__(self, f, budget: ReadBudget):
        self._f = f
        self._budget = budget

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._f.read(len(buffer))
        n = len(data)
        self._budget.take(n)
        buffer[:n] = data
        return n

    def seekable(self) -> bool:
        return self._f.seekable()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()


def counted(f):
    """`f`, counted against the current budget when there is one."""
    budget = _current.get()
    if budget is None:
        return f
    return io.BufferedReader(_CountingReader(f, budget))
