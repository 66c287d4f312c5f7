"""IndexMeta, the typed reader of a saved index's meta.json that the build side
and the loader use instead of parsing it: what a saved index says of its kind,
segments and last update, for the formats this explaind reads, and the empty
answer for what it cannot read."""
import json

import numpy as np
import pytest

from explaind.server.index import ExampleIndex, SearchConfig
from explaind.server.index.example_index import Additions
from explaind.server.index.kinds import IndexKind
from explaind.server.index.meta import IndexMeta

D = 8


def test_a_saved_update_reads_back_its_kind_segments_and_counts(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6000, D)).astype(np.float32)
    config = SearchConfig(dimensions=D, distance="SQUARED_L2_DISTANCE", leaf_node_embedding_count=500)
    base = ExampleIndex.build(x, [f"a{i}" for i in range(6000)], None, None, config)
    for name in ("b1", "b2", "segments"):
        (tmp_path / name).mkdir()
    base.save(str(tmp_path / "b1"), str(tmp_path / "segments"), segment_name="b1")
    y = rng.standard_normal((7, D)).astype(np.float32)
    updated = base.updated(Additions(y, [f"n{i}" for i in range(7)], [[]] * 7, [None] * 7), np.array([0, 9, 4]))
    updated.save(str(tmp_path / "b2"), str(tmp_path / "segments"), segment_name="b2")

    meta = IndexMeta.read(str(tmp_path / "b2"))
    assert meta.kind is IndexKind.IVF_PQ and meta.kind.compressed
    assert (meta.segment_names, meta.last_update) == (["b1", "b2"], (7, 3))
    assert [s.rows for s in meta.segments] == [6000, 7]
    assert (meta.size, meta.dimensions, meta.config, meta.info) == (6007, D, updated.config, updated.info)
    assert IndexMeta.parse((tmp_path / "b2" / "meta.json").read_bytes()) == meta
    # What the file holds is what the format always held: the reader adds no key.
    on_disk = json.loads((tmp_path / "b2" / "meta.json").read_text())
    assert on_disk["kind"] == "ivf_pq" and on_disk["last_update"] == [7, 3]
    assert on_disk["segments"] == [{"name": "b1", "rows": 6000}, {"name": "b2", "rows": 7}]
    assert IndexMeta.read(str(tmp_path / "b1")).last_update == (0, 0)


@pytest.mark.parametrize("nlist, kind", [(0, IndexKind.FLAT), (20, IndexKind.IVF_FLAT)])
def test_format_1_records_no_kind_and_its_lists_tell(nlist, kind):
    info = {"index_type": "x", "nlist": nlist, "nprobe": nlist, "device": "cpu", "index_bytes": 0, "metric": "m"}
    meta = IndexMeta.parse(json.dumps({"format_version": 1, "info": info, "size": 5, "dimensions": D,
                                       "config": SearchConfig(dimensions=D).to_json()}))
    assert meta.readable and meta.kind is kind and meta.segment_names == [] and meta.last_update == (0, 0)


@pytest.mark.parametrize("text", ["{}", '{"format_version": 3, "kind": "hnsw", "config": 7}'])
def test_what_it_cannot_read_gives_its_version_alone(text):
    meta = IndexMeta.parse(text.encode())
    assert not meta.readable and meta.kind is None and meta.config is None
    assert (meta.segment_names, meta.last_update) == ([], (0, 0))
    assert meta.format_version == json.loads(text).get("format_version")
