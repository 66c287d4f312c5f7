"""Reading ExplainRequest instances: the EMBEDDINGS fast paths agree with the generic one."""
import numpy as np
import pytest
from google.protobuf import json_format, struct_pb2

from explaind.server.serving.requests import Limits, parse_instances
from explaind.server.errors import InvalidArgument


def _values(*documents):
    return [json_format.ParseDict(d, struct_pb2.Value()) for d in documents]


@pytest.mark.parametrize("dimensions", [3, 63, 64, 128, 1000])
def test_bare_embeddings_read_exactly_whatever_their_size(dimensions):
    vector = np.random.default_rng(dimensions).normal(size=dimensions)
    (bare, wrapped) = parse_instances(_values(vector.tolist(), {"embedding": vector.tolist(), "id": "q"}),
                                      None, True, Limits())
    np.testing.assert_array_equal(bare.embedding, vector.astype(np.float32))
    np.testing.assert_array_equal(np.asarray(wrapped.embedding, np.float32), vector.astype(np.float32))
    assert bare.id is None and wrapped.id == "q"


@pytest.mark.parametrize("dimensions", [8, 128])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1e39])
def test_non_finite_embeddings_are_invalid_argument_naming_the_instance(dimensions, bad):
    vector = [0.5] * dimensions
    vector[dimensions // 2] = bad
    value = struct_pb2.Value()
    value.list_value.values.extend(struct_pb2.Value(number_value=x) for x in vector)
    with pytest.raises(InvalidArgument) as err:
        parse_instances(_values([0.0] * dimensions) + [value], None, True, Limits())
    assert err.value.field == "instances[1]"
