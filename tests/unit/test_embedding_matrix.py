"""The build's embedding matrix against np.concatenate of the same chunks."""
import numpy as np
import pytest

from explaind.server.errors import InvalidArgument
from explaind.server.builds.matrix import EmbeddingMatrix


@pytest.mark.parametrize("expected", [0, 1, 7, 100, 1000])
def test_rows_in_order_whatever_the_count_said(expected):
    rng = np.random.default_rng(expected)
    chunks = [rng.normal(size=(n, 4)) for n in (3, 1, 50, 46)]       # 100 rows in all
    matrix = EmbeddingMatrix(expected, "f")
    for chunk in chunks:
        matrix.append(chunk)
    got = matrix.result()
    assert got.dtype == np.float32 and got.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(got, np.concatenate(chunks).astype(np.float32))


def test_exact_count_allocates_once():
    matrix = EmbeddingMatrix(10, "f")
    matrix.append(np.ones((4, 3)))
    first = matrix.result().base
    matrix.append(np.zeros((6, 3)))
    assert matrix.result().base is first          # never reallocated


def test_a_different_width_names_the_field():
    matrix = EmbeddingMatrix(10, "model.x.uris")
    matrix.append(np.ones((2, 3)))
    with pytest.raises(InvalidArgument) as err:
        matrix.append(np.ones((2, 4)))
    assert err.value.field == "model.x.uris" and "from 2 on" in err.value.message
