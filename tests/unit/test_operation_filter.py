"""ListOperations filters against a hand-built set of operations."""
import pytest
from google.longrunning import operations_pb2
from google.rpc import status_pb2

from explaind.server.control.operation_filter import parse_filter
from explaind.server.errors import InvalidArgument
from explaind.v1 import model_service_pb2


def _op(name, model, done=False, error=False):
    op = operations_pb2.Operation(name=f"operations/{name}", done=done)
    op.metadata.Pack(model_service_pb2.UploadModelOperationMetadata(model=f"models/{model}"))
    if error:
        op.error.CopyFrom(status_pb2.Status(code=1, message="cancelled"))
    return op


OPS = [_op("a", "tab"), _op("b", "tab", done=True), _op("c", "img", done=True, error=True), _op("d", "img")]


@pytest.mark.parametrize("text, expected", [
    ("", "abcd"),
    ("done=false", "ad"),
    ("done = true", "bc"),
    ("DONE=TRUE and error=false", "b"),
    ("error=true", "c"),
    ('model="tab"', "ab"),
    ("model=models/img AND done=false", "d"),
    ("model=none", ""),
])
def test_filters_select_the_right_operations(text, expected):
    wanted = parse_filter(text)
    assert "".join(op.name[-1] for op in OPS if wanted(op)) == expected


@pytest.mark.parametrize("text", ["state=RUNNING", "done=maybe", "done", "done=true OR done=false"])
def test_unsupported_filters_are_invalid_argument_naming_the_field(text):
    with pytest.raises(InvalidArgument) as err:
        parse_filter(text)
    assert err.value.field == "filter"


def test_an_operation_of_another_kind_names_no_model():
    from google.protobuf import empty_pb2

    from explaind.server.store.operations import model_of

    assert model_of(OPS[0]) == "models/tab"
    other = operations_pb2.Operation(name="operations/x")
    other.metadata.Pack(empty_pb2.Empty())
    assert model_of(other) == "" and model_of(operations_pb2.Operation()) == ""
    assert not parse_filter("model=")(other)      # '' is no model: models/ matches nothing
