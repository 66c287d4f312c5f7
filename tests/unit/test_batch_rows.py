"""A batch job's input read as Vertex AI reads each instancesFormat: every row
once, in data set order, its position counting across files; unreadable rows
come back with their error (the job goes on), a broken TFRecord frame fails
the file; the count equals the rows read; instance_config shapes the rows."""
from __future__ import annotations

import base64
import gzip
import struct

import grpc
import pytest

from explaind.server.batch.instances import InstanceShape
from explaind.server.batch.rows import InputFiles, Row
from explaind.server.builds.readers.tfrecord import masked_crc32c
from explaind.server.errors import InvalidArgument, PermissionDenied
from explaind.server.security import uris
from explaind.v1 import batch_service_pb2


@pytest.fixture(autouse=True)
def no_uri_policy():
    uris.install(uris.UriPolicy())
    yield
    uris.install(uris.UriPolicy())


def _tfrecord(records: list[bytes]) -> bytes:
    out = b""
    for payload in records:
        length = struct.pack("<Q", len(payload))
        out += length + struct.pack("<I", masked_crc32c(length)) + payload + struct.pack("<I", masked_crc32c(payload))
    return out


def _read(files: InputFiles) -> list[Row]:
    rows = list(files.rows())
    assert files.count() == len(rows)
    assert [r.position for r in rows] == list(range(len(rows)))
    return rows


def test_jsonl_rows_across_files_with_bad_lines_kept_as_errors(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"x": [1, 2]}\n\n[3, 4]\nnot json\n')
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as f:
        f.write('"text"\n{"x": NaN}\n' + "[" * 100_000 + "\n")
    files = InputFiles.expand([str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl.gz")], "jsonl", "uris")
    rows = _read(files)
    assert [r.value for r in rows[:2]] == [{"x": [1, 2]}, [3, 4]]
    assert rows[2].error.code == grpc.StatusCode.INVALID_ARGUMENT and "line 4: not JSON" in rows[2].error.message
    assert rows[2].value == "not json"
    assert rows[3].value == "text" and rows[3].error is None
    assert rows[4].error is not None and "line 2" in rows[4].where          # NaN is no JSON
    assert rows[5].error is not None and len(rows[5].value) <= 10_003      # too deep: shown cut


def test_csv_rows_are_arrays_of_cells_and_a_short_row_fails(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,c\n1,2.5,x\n\n4,5\n7,8,9\nnan,inf,-1e999\n")
    rows = _read(InputFiles.expand([str(tmp_path / "d.csv")], "csv", "uris"))
    assert rows[0].value == [1, 2.5, "x"] and rows[0].value.header == ["a", "b", "c"]
    assert rows[3].value == ["nan", "inf", "-1e999"]             # no JSON numbers: kept as text
    assert rows[1].error.code == grpc.StatusCode.INVALID_ARGUMENT and "2 columns, the header has 3" in rows[1].error.message
    assert rows[2].value == [7, 8, 9]


@pytest.mark.parametrize("compress", [False, True])
def test_tfrecord_rows_are_the_records_in_base64(tmp_path, compress):
    payloads = [b"\x00first", b"", b"third \xff"]
    data = _tfrecord(payloads)
    path = tmp_path / "r.tfrecord"
    path.write_bytes(gzip.compress(data) if compress else data)    # gzip found by its bytes, whatever the name
    for instances_format in ("tf-record", "tf-record-gzip"):
        rows = _read(InputFiles.expand([str(path)], instances_format, "uris"))
        assert [base64.b64decode(r.value["b64"]) for r in rows] == payloads


def test_a_broken_tfrecord_frame_fails_the_file(tmp_path):
    data = _tfrecord([b"one", b"two"])
    (tmp_path / "r.tfrecord").write_bytes(data[:-3])
    with pytest.raises(InvalidArgument) as e:
        list(InputFiles.expand([str(tmp_path / "r.tfrecord")], "tf-record", "uris").rows())
    assert "record 2" in e.value.message and e.value.field == "input_config"


def test_file_list_rows_read_each_listed_file_under_the_allowed_prefix(tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "one.bin").write_bytes(b"\x01\x02")
    (allowed / "big.bin").write_bytes(b"x" * 101)
    outside = tmp_path / "secret.bin"
    outside.write_bytes(b"s")
    listing = allowed / "list.txt"
    listing.write_text(f"{allowed / 'one.bin'}\n{allowed / 'missing.bin'}\n{outside}\n{allowed / 'big.bin'}\n"
                       f"{allowed}/../secret.bin\n")
    uris.install(uris.UriPolicy([str(allowed)]))
    rows = _read(InputFiles.expand([str(listing)], "file-list", "uris", file_max_bytes=100))
    assert base64.b64decode(rows[0].value["b64"]) == b"\x01\x02" and rows[0].error is None
    assert rows[1].error.code == grpc.StatusCode.NOT_FOUND
    assert rows[2].error.code == grpc.StatusCode.PERMISSION_DENIED and rows[2].value == str(outside)
    assert rows[3].error.code == grpc.StatusCode.INVALID_ARGUMENT and "larger than 100 bytes" in rows[3].error.message
    assert rows[4].error.code == grpc.StatusCode.PERMISSION_DENIED


def test_inputs_are_checked_when_expanded(tmp_path):
    (tmp_path / "a.jsonl").write_text("1\n")
    with pytest.raises(InvalidArgument) as e:
        InputFiles.expand([str(tmp_path / "a.jsonl")], "parquet", "uris")
    assert e.value.field == "uris" and "jsonl" in e.value.message
    with pytest.raises(InvalidArgument) as e:
        InputFiles.expand([str(tmp_path / "none-*.jsonl")], "jsonl", "uris")
    assert e.value.field == "uris[0]"
    uris.install(uris.UriPolicy([str(tmp_path / "elsewhere")]))
    with pytest.raises(PermissionDenied):
        InputFiles.expand([str(tmp_path / "a.jsonl")], "jsonl", "uris")
    # A folder stands for its files, whatever their names say (the job's format reads them all).
    uris.install(uris.UriPolicy())
    (tmp_path / "b.data").write_text("2\n3\n")
    (tmp_path / "_SUCCESS").write_text("")
    assert [r.value for r in InputFiles.expand([str(tmp_path)], "jsonl", "uris").rows()] == [1, 2, 3]


def _shape(**config) -> InstanceShape:
    return InstanceShape.validated(batch_service_pb2.InstanceConfig(**config), "jsonl", "instance_config")


def test_instance_config_shapes_object_rows():
    row = Row(7, {"id": "k1", "a": 1, "b": [2, 3], "c": "x"}, "f line 8")
    assert _shape().prepare(row).instance == row.value
    keyed = _shape(key_field="id").prepare(row)
    assert (keyed.instance, keyed.shown_as, keyed.shown) == ({"a": 1, "b": [2, 3], "c": "x"}, "key", "k1")
    included = _shape(instance_type="array", included_fields=["c", "a"]).prepare(row)
    assert included.instance == ["x", 1] and included.shown == row.value
    assert _shape(excluded_fields=["b", "zz"]).prepare(row).instance == {"id": "k1", "a": 1, "c": "x"}
    missing = _shape(included_fields=["a", "nope"]).prepare(row)
    assert missing.code == grpc.StatusCode.INVALID_ARGUMENT and "'nope'" in missing.message and "f line 8" in missing.message
    assert "included_fields" in _shape(instance_type="array").prepare(row).message
    assert "has no key field" in _shape(key_field="other").prepare(row).message
    assert "needs an object" in _shape(instance_type="object").prepare(Row(0, [1, 2], "f line 1")).message
    assert _shape(instance_type="array").prepare(Row(0, [1, 2], "f line 1")).instance == [1, 2]


def test_instance_config_shapes_csv_rows(tmp_path):
    (tmp_path / "d.csv").write_text("key,a,b\nk9,1,2\n")
    row, = InputFiles.expand([str(tmp_path / "d.csv")], "csv", "uris").rows()
    csv_shape = lambda **c: InstanceShape.validated(batch_service_pb2.InstanceConfig(**c), "csv", "ic")  # noqa: E731
    assert csv_shape().prepare(row).instance == ["k9", 1, 2]
    keyed = csv_shape(key_field="key").prepare(row)
    assert (keyed.instance, keyed.shown) == ([1, 2], "k9")
    assert csv_shape(instance_type="object", key_field="key").prepare(row).instance == {"a": 1, "b": 2}


@pytest.mark.parametrize("config,instances_format,field", [
    ({"instance_type": "table"}, "jsonl", "instance_config.instance_type"),
    ({"included_fields": ["a"], "excluded_fields": ["b"]}, "jsonl", "instance_config"),
    ({"key_field": "a"}, "tf-record", "instance_config"),
    ({"key_field": "a", "included_fields": ["a"]}, "jsonl", "instance_config.included_fields"),
    ({"included_fields": [""]}, "jsonl", "instance_config.included_fields"),
    ({"excluded_fields": ["x" * 300]}, "csv", "instance_config.excluded_fields"),
])
def test_hostile_instance_configs_are_refused_naming_the_field(config, instances_format, field):
    with pytest.raises(InvalidArgument) as e:
        InstanceShape.validated(batch_service_pb2.InstanceConfig(**config), instances_format, "instance_config")
    assert e.value.field == field
