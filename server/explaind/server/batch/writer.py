"""Writes JSON lines into a staging folder as parts of at most `rows_per_file`
rows, each named by its first row (layout.part_name), streaming: a part is
written as its rows come and closed when full."""
from __future__ import annotations

from .layout import open_part


class PartWriter:
    def __init__(self, folder: str, rows_per_file: int):
        if rows_per_file < 1:
            raise ValueError(f"rows_per_file must be >= 1, got {rows_per_file}")
        self.folder = folder
        self.rows_per_file = rows_per_file
        self._file = None
        self._rows = 0
        self.parts = 0

    def write(self, position: int, line: bytes) -> None:
        """One row's line (no newline), `position` its place in the data set."""
        if self._file is None:
            self._file = open_part(self.folder, position)
            self.parts += 1
        self._file.write(line + b"\n")
        self._rows += 1
        if self._rows >= self.rows_per_file:
            self.flush_part()

    def flush_part(self) -> None:
        """Closes the part being written (the next row starts a new one)."""
        if self._file is not None:
            self._file.close()
            self._file = None
            self._rows = 0

    def close(self) -> None:
        self.flush_part()

    def __enter__(self) -> "PartWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
