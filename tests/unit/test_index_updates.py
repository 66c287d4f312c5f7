"""Compressed indexes and updates at the index level, against the numpy oracle
(tests/oracles.py): an update's answers equal a fresh build over the same
examples (exact indexes) or keep the recall floors (compressed); the vectors are
mapped, not held; format 1 folders still load."""
import json
import os
from unittest import mock

import faiss
import numpy as np
import pytest

from explaind.server.errors import InvalidArgument
from explaind.server.index import ExampleIndex, Namespace, SearchConfig, search_config_from_presets
from explaind.server.index.example_index import Additions
from explaind.server.index.meta import IndexMeta
from tests import oracles

# Slow tier (pytest -m 'not slow' leaves it out): compressed indexes trained, updated and held to recall floors.
pytestmark = pytest.mark.slow

D, K = 16, 10


def mixture(n, seed, d=D, clusters=40):
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(99).standard_normal((clusters, d)).astype(np.float32) * 2
    return (centers[rng.integers(0, clusters, n)] + rng.standard_normal((n, d))).astype(np.float32)


def examples(n, seed, prefix):
    x = mixture(n, seed)
    rng = np.random.default_rng(seed + 1)
    restricts = [[Namespace("color", (("red", "blue")[int(rng.integers(2))],))] for _ in range(n)]
    tags = [f"t{int(rng.integers(6))}" for _ in range(n)]
    return x, [f"{prefix}{i}" for i in range(n)], restricts, tags


def oracle_neighbors(x, ids, restricts, tags, q, distance, allow=None, crowding=0, k=K):
    out = []
    for row in q:
        dist = oracles.distances(row, x, distance)[0]
        admissible = np.array([allow is None or allow in r[0].allow for r in restricts])
        out.append([ids[p] for p in oracles.crowded_search(dist, admissible, tags, k, crowding)])
    return out


def ids_of(found):
    return [[n.id for n in row] for row in found]


EXACT_TREE_AH = dict(algorithm="tree_ah", leaf_node_embedding_count=200, leaf_nodes_to_search_percent=100,
                     approximate_neighbors_count=100_000)      # every list and every candidate: exact


@pytest.mark.parametrize("distance", ["SQUARED_L2_DISTANCE", "COSINE_DISTANCE", "DOT_PRODUCT_DISTANCE"])
@pytest.mark.parametrize("algorithm", ["brute_force", "exact_tree_ah"])
def test_an_update_answers_as_a_fresh_build_over_the_same_examples(distance, algorithm):
    extra = EXACT_TREE_AH if algorithm == "exact_tree_ah" else {"algorithm": "brute_force"}
    config = SearchConfig(dimensions=D, distance=distance, feature_norm="NONE", **extra)
    x, ids, restricts, tags = examples(6000, 1, "a")
    y, new_ids, new_restricts, new_tags = examples(700, 2, "b")
    with mock.patch("explaind.server.index.config.EXACT_BELOW", 1000):
        base = ExampleIndex.build(x, ids, restricts, tags, config)
        removed = np.arange(0, 6000, 7)
        updated = base.updated(Additions(y, new_ids, new_restricts, new_tags), removed)
        keep = np.setdiff1d(np.arange(6000), removed)
        all_x = np.concatenate([x[keep], y])
        all_ids = [ids[i] for i in keep] + new_ids
        all_restricts = [restricts[i] for i in keep] + new_restricts
        all_tags = [tags[i] for i in keep] + new_tags
        fresh = ExampleIndex.build(all_x, all_ids, all_restricts, all_tags, config)
    assert updated.kind == fresh.kind == ("flat" if algorithm == "brute_force" else "ivf_pq")
    assert updated.live_count == len(all_ids) and updated.last_update == (700, len(removed))
    q = mixture(12, 3)
    for kwargs, allow, crowding in (({}, None, 0), ({"restricts": [[Namespace("color", ("red",))]] * 12}, "red", 0),
                                    ({"crowding_count": 2}, None, 2)):
        got = updated.search(q, K, **kwargs)
        want = oracle_neighbors(all_x, all_ids, all_restricts, all_tags, q, distance, allow, crowding)
        assert ids_of(got) == want == ids_of(fresh.search(q, K, **kwargs))
        for row, fresh_row in zip(got, fresh.search(q, K, **kwargs)):
            np.testing.assert_allclose([n.distance for n in row], [n.distance for n in fresh_row],
                                       rtol=1e-4, atol=1e-4)
    # The new examples' restricts and tags apply at once; removed examples are gone everywhere.
    gone = {ids[i] for i in removed}
    for row in ids_of(updated.search(q, 200, restricts=[[Namespace("color", ("blue",))]] * 12)):
        assert not gone & set(row)


def test_a_compressed_update_keeps_the_recall_floors():
    """PRECISE and FAST after removing 10% and adding 10%: recall@10 against brute
    force over the resulting examples stays above the preset's floor."""
    x, ids, restricts, tags = examples(30_000, 4, "a")
    y, new_ids, new_restricts, new_tags = examples(3_000, 5, "b")
    q = mixture(200, 6)
    for preset, floor in (("PRECISE", 0.99), ("FAST", 0.90)):
        base = ExampleIndex.build(x, ids, restricts, tags, search_config_from_presets(preset, "TABULAR", K))
        removed = np.arange(0, 30_000, 10)
        updated = base.updated(Additions(y, new_ids, new_restricts, new_tags), removed)
        assert updated.info.index_type == base.info.index_type and updated.info.index_type.endswith("x4fs")
        keep = np.setdiff1d(np.arange(30_000), removed)
        all_x, all_ids = np.concatenate([x[keep], y]), [ids[i] for i in keep] + new_ids
        truth, _ = oracles.nearest(all_x, q, K, "SQUARED_L2_DISTANCE")
        got = updated.search(q, K)
        recall = np.mean([len({n.id for n in row} & {all_ids[p] for p in t}) / K for row, t in zip(got, truth)])
        assert recall >= floor, (preset, recall)
        assert updated.lineage.added == 3_000 and updated.lineage.trained == 30_000
        assert updated.retrain_due(0.05) and not updated.retrain_due(0.5)
        retrained = updated.updated(None, np.array([], np.int64), retrain=True)
        assert retrained.lineage == type(retrained.lineage)(trained=len(all_ids), next_default_id=33_000)
        assert retrained.size == retrained.live_count == len(all_ids)       # compacted


def test_saved_updates_share_segments_and_map_the_vectors(tmp_path):
    x, ids, restricts, tags = examples(6000, 7, "a")
    y, new_ids, new_restricts, new_tags = examples(500, 8, "b")
    config = search_config_from_presets("PRECISE", "IMAGE", K)      # cosine: norms kept beside the codes
    base = ExampleIndex.build(x, ids, restricts, tags, config)
    segments, first, second = tmp_path / "segments", tmp_path / "b1", tmp_path / "b2"
    for folder in (segments, first, second):
        folder.mkdir()
    base.save(str(first), str(segments), segment_name="b1")
    codes_only = ExampleIndex.load(str(first), use_gpu=False, keep_codes=True)
    updated = codes_only.updated(Additions(y, new_ids, new_restricts, new_tags), np.array([3, 5]))
    updated.save(str(second), str(segments), segment_name="b2")
    assert sorted(os.listdir(segments)) == ["b1.npy", "b2.npy"]
    assert IndexMeta.read(str(second)).segment_names == ["b1", "b2"]
    assert not any(f.endswith(".npy") and f.startswith("b") for f in os.listdir(second))
    loaded = ExampleIndex.load(str(second), segments_folder=str(segments))
    assert all(isinstance(s, np.memmap) for s in loaded.contents.vectors.segments)
    np.testing.assert_array_equal(loaded.embeddings_of(np.array([0, 6000, 6499])), np.stack([x[0], y[0], y[499]]))
    assert loaded.positions_of(["a3", "a4", "b7"]) == {"a4": 4, "b7": 6007}      # a3 was removed
    # Host memory: codes (d/2 bytes), IVF ids, norms, each position's row in its
    # segment (4 bytes), ids, restricts, tags; the vectors are mapped.
    n = loaded.live_count
    assert loaded.info.mapped_bytes == loaded.size * D * 4
    assert loaded.info.index_bytes - loaded.attribute_bytes < n * (D // 2 + 8 + 4 + 4) + 2 * loaded.info.nlist * D * 4 \
        + 16 * D * 4
    q = mixture(5, 9)
    keep = [i for i in range(6000) if i not in (3, 5)]
    all_x = np.concatenate([x[keep], y])
    all_ids = [ids[i] for i in keep] + new_ids
    truth, _ = oracles.nearest(all_x, q, K, "COSINE_DISTANCE")
    got = loaded.search(q, K)
    assert np.mean([len({n.id for n in row} & {all_ids[p] for p in t}) / K for row, t in zip(got, truth)]) >= 0.99
    with pytest.raises(ValueError, match="loaded for serving"):
        loaded.updated(None, np.array([7]))


def test_update_errors():
    x, ids, restricts, tags = examples(100, 10, "a")
    base = ExampleIndex.build(x, ids, restricts, tags, SearchConfig(dimensions=D, algorithm="brute_force"))
    with pytest.raises(InvalidArgument, match="without examples"):
        base.updated(None, np.arange(100))
    with pytest.raises(InvalidArgument, match="duplicate example id 'z'"):
        base.updated(Additions(x[:2], ["z", "z"], [[], []], [None, None]), np.array([], np.int64))
    with pytest.raises(InvalidArgument, match="dimensions"):
        base.updated(Additions(np.zeros((1, 3), np.float32), ["n"], [[]], [None]), np.array([], np.int64))
    with pytest.raises(ValueError, match="not live"):
        base.updated(None, np.array([100]))


def _write_format_1(folder, x, ids, config_json, nlist=0):
    """A folder as format 1 saved it: index.faiss (Flat or IVF-Flat), ids.json, embeddings.npy beside IVF."""
    d = x.shape[1]
    if nlist:
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist, faiss.METRIC_L2)
        index.train(x)
        index.nprobe = nlist
        np.save(folder / "embeddings.npy", x)
    else:
        index = faiss.IndexFlatL2(d)
    index.add(x)
    faiss.write_index(index, str(folder / "index.faiss"))
    np.save(folder / "crowding_codes.npy", np.full(len(x), -1, np.int32))
    (folder / "restricts.json").write_text(json.dumps({"size": len(x), "allow_keys": [], "deny_keys": []}))
    np.savez(folder / "restricts.npz", allow_offsets=np.zeros(1, np.int64), allow_positions=np.zeros(0, np.int32),
             deny_offsets=np.zeros(1, np.int64), deny_positions=np.zeros(0, np.int32))
    info = {"index_type": f"IVF{nlist},Flat" if nlist else "Flat", "nlist": nlist, "nprobe": nlist,
            "device": "cpu", "index_bytes": 0, "metric": "SQUARED_L2_DISTANCE"}
    (folder / "meta.json").write_text(json.dumps({"format_version": 1, "config": config_json, "info": info,
                                                  "size": len(x), "dimensions": d}))
    (folder / "ids.json").write_text(json.dumps(ids))
    (folder / "crowding_tags.json").write_text("[]")


@pytest.mark.parametrize("nlist", [0, 20])
def test_format_1_indexes_load_search_and_update_into_format_2(tmp_path, nlist):
    x, ids, _, _ = examples(2000, 11, "a")
    config = SearchConfig(dimensions=D, distance="SQUARED_L2_DISTANCE", algorithm="tree_ah" if nlist else
                          "brute_force", leaf_node_embedding_count=100, leaf_nodes_to_search_percent=100)
    _write_format_1(tmp_path, x, ids, config.to_json(), nlist)
    old = ExampleIndex.load(str(tmp_path))
    assert old.kind == ("ivf_flat" if nlist else "flat") and old.info.index_type.endswith("Flat")
    q = mixture(6, 12)
    want = oracle_neighbors(x, ids, [[Namespace("c", ())]] * len(x), [None] * len(x), q, "SQUARED_L2_DISTANCE")
    assert ids_of(old.search(q, K)) == want
    y = mixture(50, 13)
    new = old.updated(Additions(y, [f"n{i}" for i in range(50)], [[]] * 50, [None] * 50), np.array([0]))
    out = tmp_path / "v2"
    out.mkdir()
    new.save(str(out))
    assert json.loads((out / "meta.json").read_text())["format_version"] == 2
    again = ExampleIndex.load(str(out))
    all_x = np.concatenate([x[1:], y])
    all_ids = ids[1:] + [f"n{i}" for i in range(50)]
    assert ids_of(again.search(q, K)) == oracle_neighbors(all_x, all_ids, [[Namespace("c", ())]] * len(all_x),
                                                          [None] * len(all_x), q, "SQUARED_L2_DISTANCE")


def test_an_unknown_format_is_refused_naming_what_this_version_reads(tmp_path):
    (tmp_path / "meta.json").write_text(json.dumps({"format_version": 3}))
    with pytest.raises(ValueError, match="unsupported index format 3.*reads formats 1, 2"):
        ExampleIndex.load(str(tmp_path))
