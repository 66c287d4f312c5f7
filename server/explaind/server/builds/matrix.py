"""The build's embedding matrix, filled in place.

In memory: the data set is counted before it is read, so the matrix is
allocated once at its final size and each batch is copied into it: a build
holds its embeddings once, not as a list of chunks plus their concatenation.
If the data set turns out longer than counted (a file grew meanwhile), it
grows by doubling.

In a file (`path`: a build's scratch folder): each batch is written after the
last, and the result is the file memory-mapped, which the index build reads
block by block; the build's memory then does not grow with the data set.
"""
from __future__ import annotations

import numpy as np

from ..errors import InvalidArgument
from ..index import segments


class EmbeddingMatrix:
    def __init__(self, expected_rows: int, field: str, path: str | None = None):
        self._expected = max(int(expected_rows), 1)
        self._field = field
        self._array: np.ndarray | None = None
        self._path = path
        self._file = None
        self._width = 0
        self.rows = 0

    def append(self, chunk: np.ndarray) -> None:
        """chunk: (rows, d) embeddings of the next examples, in data set order."""
        if self._path is not None:
            self._append_to_file(chunk)
            return
        if self._array is None:
            self._array = np.empty((self._expected, chunk.shape[1]), np.float32)
        elif chunk.shape[1] != self._array.shape[1]:
            self._refuse(chunk, self._array.shape[1])
        end = self.rows + len(chunk)
        if end > len(self._array):
            grown = np.empty((max(end, 2 * len(self._array)), self._array.shape[1]), np.float32)
            grown[:self.rows] = self._array[:self.rows]
            self._array = grown
        self._array[self.rows:end] = chunk
        self.rows = end

    def _refuse(self, chunk: np.ndarray, width: int) -> None:
        raise InvalidArgument(f"examples from {self.rows} on have {chunk.shape[1]}-value embeddings, earlier "
                              f"ones {width}", field=self._field)

    def _append_to_file(self, chunk: np.ndarray) -> None:
        if self._file is None:
            self._width = chunk.shape[1]
            self._file = open(self._path, "wb")
            self._file.write(segments.npy_header((self._expected, self._width)))
        elif chunk.shape[1] != self._width:
            self._refuse(chunk, self._width)
        self._file.write(np.ascontiguousarray(chunk, dtype=np.float32).tobytes())
        self.rows += len(chunk)

    def result(self) -> np.ndarray:
        """The (rows, d) float32 embeddings appended so far: a view, no copy (in
        memory), or the file memory-mapped (read-only; the header rewritten with
        the rows there are)."""
        if self._path is not None:
            if self._file is None:
                return np.empty((0, 0), np.float32)
            if not self._file.closed:
                self._file.seek(0)
                self._file.write(segments.npy_header((self.rows, self._width)))
                self._file.close()
            return segments.open_segment(self._path, random_access=False)
        if self._array is None:
            return np.empty((0, 0), np.float32)
        return self._array[:self.rows]
