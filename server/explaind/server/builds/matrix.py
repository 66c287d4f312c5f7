"""The build's embedding matrix, filled in place.

The data set is counted before it is read, so the matrix is allocated once
at its final size and each batch is copied into it: a build holds its
embeddings once, not as a list of chunks plus their concatenation. If the
data set turns out longer than counted (a file grew meanwhile), it grows by
doubling.
"""
from __future__ import annotations

import numpy as np

from ..errors import InvalidArgument


class EmbeddingMatrix:
    def __init__(self, expected_rows: int, field: str):
        self._expected = max(int(expected_rows), 1)
        self._field = field
        self._array: np.ndarray | None = None
        self.rows = 0

    def append(self, chunk: np.ndarray) -> None:
        """chunk: (rows, d) embeddings of the next examples, in data set order."""
        if self._array is None:
            self._array = np.empty((self._expected, chunk.shape[1]), np.float32)
        elif chunk.shape[1] != self._array.shape[1]:
            raise InvalidArgument(f"examples from {self.rows} on have {chunk.shape[1]}-value embeddings, earlier "
                                  f"ones {self._array.shape[1]}", field=self._field)
        end = self.rows + len(chunk)
        if end > len(self._array):
            grown = np.empty((max(end, 2 * len(self._array)), self._array.shape[1]), np.float32)
            grown[:self.rows] = self._array[:self.rows]
            self._array = grown
        self._array[self.rows:end] = chunk
        self.rows = end

    def result(self) -> np.ndarray:
        """The (rows, d) float32 embeddings appended so far (a view, no copy)."""
        if self._array is None:
            return np.empty((0, 0), np.float32)
        return self._array[:self.rows]
