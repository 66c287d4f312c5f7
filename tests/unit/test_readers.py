"""Data set readers: every format round-trips records written here."""
from __future__ import annotations

import csv
import gzip
import json
import struct
import uuid

import fsspec
import numpy as np
import pytest

from explaind.server.errors import InvalidArgument
from explaind.server.builds import readers
from explaind.server.builds.readers import count_records, expand_uris, iter_batches, iter_records

FIELD = "model.explanation_spec.parameters.examples.gcs_source.uris"
RESTRICTS = [{"namespace": "color", "allow": ["red"], "deny": ["blue"]}]


def read(paths, input_names=("x", "s"), field=FIELD + "[0]"):
    return list(iter_records(list(paths), None if input_names is None else list(input_names), field))


def error(fn, *args) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as e:
        fn(*args)
    return e.value


RECORDS = [
    {"x": [1.0, 2.0], "s": "a", "id": "r0", "restricts": RESTRICTS, "crowding_tag": "t0"},
    {"x": [3.0, 4.0], "s": "b"},
    {"embedding": [0.5, 0.25, 1.0], "id": "r2", "crowding_tag": "t2"},
]


def check(instances):
    assert len(instances) == 3
    a, b, c = instances
    assert a.inputs["x"] == [1.0, 2.0] and a.inputs["s"] in ("a", b"a", [b"a"])
    assert (a.id, a.restricts, a.crowding_tag) == ("r0", RESTRICTS, "t0")
    assert b.inputs["x"] == [3.0, 4.0] and (b.id, b.restricts, b.crowding_tag) == (None, None, None)
    assert c.inputs is None and c.embedding.dtype == np.float32 and c.embedding.tolist() == [0.5, 0.25, 1.0]
    assert (c.id, c.crowding_tag) == ("r2", "t2")


# ---------------------------------------------------------------- JSONL


def test_jsonl_roundtrip_and_count(tmp_path):
    p = tmp_path / "data.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n\n")
    check(read([str(p)]))
    assert count_records([str(p)]) == 3


def test_jsonl_gzip_and_json_extension(tmp_path):
    p = tmp_path / "data.jsonl.gz"
    with gzip.open(p, "wt") as f:
        f.write("\n".join(json.dumps(r) for r in RECORDS))
    check(read([str(p)]))
    q = tmp_path / "data.json"
    q.write_text("\n".join(json.dumps(r) for r in RECORDS))
    check(read([str(q)]))


def test_malformed_jsonl_names_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps(RECORDS[0]) + "\n\n" + '{"x": [1, 2], "s": \n')
    err = error(read, [str(p)])
    assert err.field == FIELD + "[0]"
    assert "bad.jsonl" in err.message and "line 3" in err.message


def test_invalid_record_names_file_line_and_key(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps(RECORDS[1]) + "\n" + json.dumps({"x": [1], "s": "a", "colour": "red"}) + "\n")
    err = error(read, [str(p)])
    assert "line 2" in err.message and "colour" in err.message and err.field == FIELD + "[0]"


# ---------------------------------------------------------------- CSV


def test_csv_roundtrip(tmp_path):
    p = tmp_path / "data.csv"
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "x", "s", "crowding_tag", "restricts", "embedding"])
        w.writerow(["r0", "1.5", "a", "t0", json.dumps(RESTRICTS), ""])
        w.writerow(["", "3", "b", "", "", ""])
        w.writerow(["r2", "", "", "t2", "", "[0.5, 0.25, 1.0]"])
    a, b, c = read([str(p)])
    assert a.inputs == {"x": 1.5, "s": "a"} and (a.id, a.restricts, a.crowding_tag) == ("r0", RESTRICTS, "t0")
    assert b.inputs == {"x": 3, "s": "b"} and b.id is None and b.crowding_tag is None
    assert c.inputs is None and c.embedding.tolist() == [0.5, 0.25, 1.0] and c.id == "r2"
    assert count_records([str(p)]) == 3


def test_csv_feature_columns_pack_into_single_input(tmp_path):
    p = tmp_path / "data.csv"
    p.write_text("id,f0,f1,f2\na,1,2,3\nb,4,5,6\n")
    rows = read([str(p)], input_names=["features"])
    assert [r.inputs["features"] for r in rows] == [[1, 2, 3], [4, 5, 6]]
    assert [r.id for r in rows] == ["a", "b"]


def test_csv_errors_name_file_and_line(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("x,s,colour\n1,a,red\n")
    err = error(read, [str(p)])
    assert "bad.csv line 1" in err.message and "colour" in err.message
    p.write_text("x,s\n1,a\n2\n")
    err = error(read, [str(p)])
    assert "bad.csv line 3" in err.message
    p.write_text('x,s,restricts\n1,a,"[{bad"\n')
    assert "line 2" in error(read, [str(p)]).message


# ---------------------------------------------------------------- TFRecord


def _tfrecord_bytes(examples) -> bytes:
    # The TFRecord framing; the reader checks only the length's CRC.
    from explaind.server.builds.readers.tfrecord import masked_crc32c

    out = b""
    for ex in examples:
        payload = ex.SerializeToString()
        length = struct.pack("<Q", len(payload))
        out += length + struct.pack("<I", masked_crc32c(length)) + payload + b"\0" * 4
    return out


def _examples():
    from tensorflow.core.example import example_pb2

    def ex(**features):
        e = example_pb2.Example()
        for k, v in features.items():
            f = e.features.feature[k]
            if isinstance(v[0], bytes):
                f.bytes_list.value.extend(v)
            elif isinstance(v[0], int):
                f.int64_list.value.extend(v)
            else:
                f.float_list.value.extend(v)
        return e

    return [
        ex(x=[1.0, 2.0], s=[b"a"], id=[b"r0"], crowding_tag=[b"t0"], restricts=[json.dumps(RESTRICTS).encode()], label=[1]),
        ex(x=[3.0, 4.0], s=[b"b"]),
        ex(embedding=[0.5, 0.25, 1.0], id=[b"r2"], crowding_tag=[b"t2"]),
    ]


def test_tfrecord_roundtrip_with_tensorflow_writer(tmp_path):
    import tensorflow as tf

    p = tmp_path / "data.tfrecord"
    with tf.io.TFRecordWriter(str(p)) as w:
        for e in _examples():
            w.write(e.SerializeToString())
    check(read([str(p)]))  # the "label" feature is ignored
    assert count_records([str(p)]) == 3


def test_tfrecord_gzip_with_and_without_suffix(tmp_path):
    import tensorflow as tf

    for name in ("data.tfrecord.gz", "gzipped.tfrecord"):
        p = tmp_path / name
        with tf.io.TFRecordWriter(str(p), options="GZIP") as w:
            for e in _examples():
                w.write(e.SerializeToString())
        check(read([str(p)]))
        assert count_records([str(p)]) == 3


def test_tfrecord_corrupt_header(tmp_path):
    p = tmp_path / "data.tfrecord"
    p.write_bytes(b"\x10" + b"\0" * 11 + b"x" * 20)
    err = error(read, [str(p)])
    assert "record 1" in err.message and "CRC" in err.message


def test_tfrecord_int_id_and_truncated_file(tmp_path):
    from tensorflow.core.example import example_pb2

    e = example_pb2.Example()
    e.features.feature["id"].int64_list.value.append(42)
    e.features.feature["embedding"].float_list.value.extend([1.0])
    p = tmp_path / "data.tfrec"
    p.write_bytes(_tfrecord_bytes([e]) + b"\x05\x00")
    err = error(read, [str(p)], None)
    assert "record 2" in err.message and "data.tfrec" in err.message
    p.write_bytes(_tfrecord_bytes([e]))
    assert read([str(p)], None)[0].id == "42"


# ---------------------------------------------------------------- .npy and Parquet


def test_npy_embeddings(tmp_path):
    p = tmp_path / "emb.npy"
    data = np.arange(12, dtype=np.float64).reshape(4, 3)
    np.save(p, data)
    rows = read([str(p)], None)
    assert [r.id for r in rows] == [None] * 4
    np.testing.assert_array_equal(np.stack([r.embedding for r in rows]), data.astype(np.float32))
    assert count_records([str(p)]) == 4
    np.save(p, np.asfortranarray(data))
    np.testing.assert_array_equal(np.stack([r.embedding for r in read([str(p)], None)]), data)
    np.save(p, np.zeros(3))
    assert "emb.npy" in error(read, [str(p)], None).message


def test_npy_chunks(tmp_path, monkeypatch):
    from explaind.server.builds.readers import columnar

    monkeypatch.setattr(columnar, "CHUNK_ROWS", 3)
    p = tmp_path / "emb.npy"
    data = np.random.default_rng(0).normal(size=(10, 2)).astype(np.float32)
    np.save(p, data)
    np.testing.assert_array_equal(np.stack([r.embedding for r in read([str(p)], None)]), data)


def test_parquet_embeddings_and_inputs(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "emb.parquet"
    pq.write_table(
        pa.table(
            {
                "embedding": [[0.5, 1.0], [2.0, 3.0]],
                "id": [7, None],
                "crowding_tag": ["t", None],
                "restricts": [json.dumps(RESTRICTS), None],
            }
        ),
        p,
    )
    a, b = read([str(p)], None)
    assert (a.id, a.crowding_tag, a.restricts) == ("7", "t", RESTRICTS)
    assert (b.id, b.crowding_tag, b.restricts) == (None, None, None) and b.embedding.tolist() == [2.0, 3.0]
    assert count_records([str(p)]) == 2
    q = tmp_path / "inputs.parquet"
    pq.write_table(pa.table({"x": [[1.0, 2.0], [3.0, 4.0]], "s": ["a", "b"], "id": ["r0", "r1"]}), q)
    rows = read([str(q)])
    assert rows[0].inputs == {"x": [1.0, 2.0], "s": "a"} and rows[1].id == "r1"
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"nope")
    assert "bad.parquet" in error(read, [str(bad)]).message


# ---------------------------------------------------------------- URIs


def test_expand_globs_folders_and_file_urls(tmp_path):
    for name in ("b.jsonl", "a.jsonl", "c.csv"):
        (tmp_path / name).write_text("")
    (tmp_path / "_SUCCESS").write_text("")
    paths = expand_uris([str(tmp_path / "*.jsonl"), "file://" + str(tmp_path / "c.csv")], FIELD)
    assert paths == [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"), str(tmp_path / "c.csv")]
    assert expand_uris([str(tmp_path)], FIELD) == paths
    err = error(expand_uris, [str(tmp_path / "a.jsonl"), str(tmp_path / "none*.jsonl")], FIELD)
    assert err.field == FIELD + "[1]" and "none*.jsonl" in err.message
    assert error(expand_uris, [""], FIELD).field == FIELD + "[0]"


def test_fsspec_memory_url_end_to_end():
    root = f"memory://bucket-{uuid.uuid4().hex}"
    with fsspec.open(f"{root}/part-1.jsonl", "w") as f:
        f.write("\n".join(json.dumps(r) for r in RECORDS))
    with fsspec.open(f"{root}/part-0.jsonl", "w") as f:
        f.write(json.dumps({"embedding": [9.0], "id": "first"}))
    pairs = readers.expand_uris_with_fields([f"{root}/part-*.jsonl"], FIELD)
    paths = [p for p, _ in pairs]
    assert [p.rsplit("/", 1)[1] for p in paths] == ["part-0.jsonl", "part-1.jsonl"]
    assert {f for _, f in pairs} == {FIELD + "[0]"}
    assert count_records(paths) == 4
    rows = list(iter_records(paths, ["x", "s"], [f for _, f in pairs]))
    assert rows[0].id == "first"
    check(rows[1:])
    assert error(expand_uris, [f"{root}/missing.jsonl"], FIELD).field == FIELD + "[0]"


def test_unknown_extension(tmp_path):
    p = tmp_path / "data.txt"
    p.write_text("{}")
    err = error(read, [str(p)])
    assert "data.txt" in err.message and err.field == FIELD + "[0]"


def test_iter_batches():
    assert [len(b) for b in iter_batches(iter(range(7)), 3)] == [3, 3, 1]
    assert list(iter_batches(iter([]), 3)) == []
    with pytest.raises(ValueError):
        list(iter_batches(iter([1]), 0))


def test_paths_from_expand_uris_carry_their_uri_field(tmp_path):
    (tmp_path / "ok.jsonl").write_text(json.dumps(RECORDS[1]) + "\n")
    (tmp_path / "bad.jsonl").write_text("{oops\n")
    paths = expand_uris([str(tmp_path / "ok.jsonl"), str(tmp_path / "bad.jsonl")], FIELD)
    err = error(lambda: list(iter_records(paths, ["x", "s"], FIELD)))
    assert err.field == FIELD + "[1]" and "bad.jsonl line 1" in err.message


def test_a_declared_jsonl_format_reads_files_whatever_their_names(tmp_path):
    """example_gcs_source.data_format JSONL: Hadoop-style part files and a folder of them."""
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "part-00000").write_text(json.dumps({"x": [1.0, 2.0], "s": "a", "id": "p0"}) + "\n")
    (folder / "part-00001").write_text(json.dumps({"x": [3.0, 4.0], "s": "b", "id": "p1"}) + "\n"
                                       + json.dumps({"x": [5.0, 6.0], "s": "c", "id": "p2"}) + "\n")
    (folder / "_SUCCESS").write_text("")
    paths = expand_uris([str(folder)], FIELD, default_format="jsonl")
    assert [p.rsplit("/", 1)[1] for p in paths] == ["part-00000", "part-00001"]
    assert count_records(paths) == 3
    assert [r.id for r in iter_records(paths, ["x", "s"], FIELD)] == ["p0", "p1", "p2"]
    # Undeclared, the same folder holds no data file, and a named file is of unknown format.
    assert error(expand_uris, [str(folder)], FIELD).field == FIELD + "[0]"
    err = error(read, expand_uris([str(folder / "part-00000")], FIELD))
    assert "unknown data format" in err.message and err.field == FIELD + "[0]"
