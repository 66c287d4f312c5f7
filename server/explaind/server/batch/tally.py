"""A job's counts as its rows come back, and the failure rule: the job fails
as soon as more than `max_failed_fraction` of its rows have failed (it cannot
end below it then), else it goes on to the end.

Row errors are grouped into kinds (the status code and the message without
its file and line), at most MAX_KINDS, for the job's partial failures."""
from __future__ import annotations

import re

from ..errors import InvalidArgument
from .task import BatchOutput, ErrorKind

MAX_KINDS = 20
MAX_MESSAGE_CHARS = 500
# "path line 3: ..." / "path record 7: ..." lead every row's message (rows.py).
_WHERE = re.compile(r"^.*? (?:line|record) \d+: ")


OTHERS = (-1, "")


class TooManyFailures(InvalidArgument):
    """More rows failed than the job allows."""


class Tally:
    def __init__(self, total: int, max_failed_fraction: float):
        self.total = total
        self.max_failed_fraction = max_failed_fraction
        self.done = 0
        self.failed = 0
        self._kinds: dict[tuple[int, str], list] = {}      # (code, message) -> [code, first full message, rows]

    @property
    def succeeded(self) -> int:
        return self.done - self.failed

    def add(self, succeeded: int, errors: list[tuple[int, str]]) -> None:
        """One batch's outcome: its succeeded rows and (code, message) per failed row.
        TooManyFailures once the failures pass the job's fraction."""
        self.done += succeeded + len(errors)
        self.failed += len(errors)
        for code, message in errors:
            self._count(code, message, 1)
        self._check()

    def merge(self, succeeded: int, kinds: tuple[ErrorKind, ...]) -> None:
        """A batch counted elsewhere (a Ray actor): its rows and its error kinds."""
        failed = sum(k.rows for k in kinds)
        self.done += succeeded + failed
        self.failed += failed
        for kind in kinds:
            self._count(kind.code, kind.message, kind.rows)
        self._check()

    def _count(self, code: int, message: str, rows: int) -> None:
        key = (code, _WHERE.sub("", message, count=1)[:MAX_MESSAGE_CHARS])
        if key not in self._kinds and len(self._kinds.keys() - {OTHERS}) >= MAX_KINDS - 1:
            key = OTHERS          # the last kind holds every other one
            message = f"other errors, the first: {message}"
        entry = self._kinds.get(key)
        if entry is None:
            self._kinds[key] = [code, message[:MAX_MESSAGE_CHARS], rows]
        else:
            entry[2] += rows

    def kinds(self) -> tuple[ErrorKind, ...]:
        """At most MAX_KINDS, the most frequent first."""
        return tuple(ErrorKind(*entry) for entry in sorted(self._kinds.values(), key=lambda entry: -entry[2]))

    def _check(self) -> None:
        if self.failed > self.max_failed_fraction * self.total:
            first = self.kinds()[0].message if self._kinds else ""
            raise TooManyFailures(
                f"{self.failed} of {self.total} rows failed, more than the job allows "
                f"({self.max_failed_fraction:g} of its rows: max_failed_fraction, else the daemon's "
                f"--batch-max-failed-fraction); the most frequent error: {first}", field="input_config")

    def output(self) -> BatchOutput:
        return BatchOutput(self.total, self.succeeded, self.failed, self.kinds())
