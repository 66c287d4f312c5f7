"""A new compressed build holds its codes once (plain_codes.py): its
fast-scan copy is what FAISS's own conversion of the plain index gives, byte
for byte; the plain index it saves is the file faiss.write_index writes of
that plain index; and the build keeps no plain lists beside the copy it
searches, whether its codes go through a scratch file or memory."""
import os

import faiss
import numpy as np
import pytest

from explaind.server.index import ExampleIndex, SearchConfig
from explaind.server.index import plain_codes
from explaind.server.index.backend import FAST_SCAN_BLOCK, fast_scan
from tests import oracles


def plain(d: int, m: int, nlist: int, sizes_seed: int, n: int) -> faiss.IndexIVFPQ:
    """A trained plain 4-bit IVF-PQ (not by residual, as builds make them), filled with n vectors."""
    rng = np.random.default_rng(sizes_seed)
    x = rng.standard_normal((max(n, 2000), d)).astype(np.float32)
    index = faiss.IndexIVFPQ(faiss.IndexFlatL2(d), d, nlist, m, 4)
    index.by_residual = False
    index.train(x)
    index.add_with_ids(x[:n], rng.permutation(10 * n)[:n].astype(np.int64))
    return index


def list_bytes(index: faiss.Index, i: int) -> tuple[bytes, bytes]:
    lists = faiss.downcast_InvertedLists(index.invlists)
    n = int(lists.list_size(i))
    code_bytes = -(-n // index.bbs) * index.bbs * index.code_size
    return (faiss.rev_swig_ptr(lists.get_codes(i), code_bytes).tobytes() if n else b"",
            faiss.rev_swig_ptr(lists.get_ids(i), n).tobytes() if n else b"")


def entries(index: faiss.IndexIVFPQ):
    """(codes, ids) of each list of a plain index, in list order."""
    lists = faiss.downcast_InvertedLists(index.invlists)
    sizes = np.array([lists.list_size(i) for i in range(index.nlist)])
    codes = [faiss.rev_swig_ptr(lists.get_codes(i), int(s) * index.code_size).reshape(int(s), index.code_size)
             for i, s in enumerate(sizes) if s]
    ids = [faiss.rev_swig_ptr(lists.get_ids(i), int(s)) for i, s in enumerate(sizes) if s]
    return sizes, np.concatenate(codes), np.concatenate(ids)


# (d, sub-quantizers, lists, vectors): an odd number of sub-quantizers; lists of 0, 1, 32, 63, 64, 65+
# entries; more than half the lists empty (FAISS stores the sizes sparse) or not
SHAPES = [(32, 32, 8, 5000), (32, 16, 16, 700), (20, 5, 4, 259), (24, 12, 64, 40), (16, 8, 3, 1)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("bbs", [32, FAST_SCAN_BLOCK])
def test_packing_list_by_list_is_faiss_conversion_and_the_saved_file_is_faiss_own(shape, bbs, tmp_path):
    d, m, nlist, n = shape
    index = plain(d, m, nlist, sum(shape), n)
    index.nprobe = 3
    shell = faiss.clone_index(index)
    shell.reset()                                   # trained, lists empty
    reference = faiss.IndexIVFPQFastScan(index, bbs)
    sizes, codes, ids = entries(index)
    held = plain_codes.ListOrderCodes(len(ids), index.code_size, str(tmp_path / "codes"))
    held.write(0, codes[:len(ids) // 2])            # written in two runs, read back list by list
    held.write(len(ids) // 2, codes[len(ids) // 2:])
    copy = faiss.IndexIVFPQFastScan(shell, bbs)
    copy.nprobe = 3
    plain_codes.fill(copy, held, sizes, ids)
    held.close()
    assert not os.path.exists(tmp_path / "codes")
    assert copy.ntotal == reference.ntotal == n
    for i in range(nlist):
        assert list_bytes(copy, i) == list_bytes(reference, i)
    assert faiss.serialize_index(plain_codes.plain_index(shell, copy)).tobytes() == \
        faiss.serialize_index(index).tobytes()
    plain_codes.write(shell, copy, str(tmp_path / "written.faiss"))
    faiss.write_index(index, str(tmp_path / "faiss.faiss"))
    assert (tmp_path / "written.faiss").read_bytes() == (tmp_path / "faiss.faiss").read_bytes()
    assert shell.ntotal == 0 and shell.invlists.compute_ntotal() == 0       # the shell stays empty


def test_pack_and_unpack_are_inverse_on_every_code_value():
    rng = np.random.default_rng(0)
    flat = rng.integers(0, 256, (300, 7), dtype=np.uint8)
    for bbs in (32, 64, 96):
        packed = plain_codes.pack(flat, bbs)
        assert packed.size == -(-300 // bbs) * bbs * 7
        assert np.array_equal(plain_codes.unpack(packed, 300, 7, bbs), flat)


def clustered(n: int, d: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    centers = rng.standard_normal((50, d)) * 3
    return (centers[rng.integers(0, 50, n)] + rng.standard_normal((n, d))).astype(np.float32)


@pytest.mark.parametrize("to_file", [True, False])
def test_a_build_holds_its_codes_once_and_saves_and_updates_the_plain_index(to_file, tmp_path):
    x = clustered(20_000, 32)
    config = SearchConfig(dimensions=32, distance="SQUARED_L2_DISTANCE", feature_norm="NONE", algorithm="tree_ah",
                          leaf_node_embedding_count=400, leaf_nodes_to_search_percent=10,
                          approximate_neighbors_count=60, neighbor_count=10)
    index = ExampleIndex.build(x, [f"e{i}" for i in range(len(x))], None, None, config, use_gpu=False,
                               segment_path=str(tmp_path / "segment.npy") if to_file else None)
    c = index.contents
    # no plain lists beside the searched copy; the codes' scratch file is gone
    assert c.faiss_index is None and c.codes_held_once
    assert c.codes_shell.invlists.compute_ntotal() == 0
    assert c.search_index.ntotal == len(x)
    assert not os.path.exists(tmp_path / "segment.npy.codes")
    # the plain index made from the copy converts back to the same copy
    whole = c.require_faiss_index()
    assert whole.ntotal == len(x) and whole.nprobe == c.search_index.nprobe
    again = fast_scan(whole)
    for i in range(whole.nlist):
        assert list_bytes(again, i) == list_bytes(c.search_index, i)
    # saved, it is FAISS's file of that plain index, and loads to the same answers
    queries = x[:40] + 0.05
    found, _ = index.search_arrays(queries, 10)
    saved = tmp_path / "saved"
    saved.mkdir()
    index.save(str(saved))
    faiss.write_index(whole, str(tmp_path / "whole.faiss"))
    assert (saved / "index.faiss").read_bytes() == (tmp_path / "whole.faiss").read_bytes()
    loaded = ExampleIndex.load(str(saved), use_gpu=False)
    assert np.array_equal(loaded.search_arrays(queries, 10)[0], found)
    truth, _ = oracles.nearest(x, queries, 10, "SQUARED_L2_DISTANCE")
    assert np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]) >= 0.9
    # an update in memory starts from the plain index
    updated = index.updated(None, np.array([3, 5]))
    assert updated.contents.faiss_index.ntotal == len(x) - 2
    assert not {3, 5} & set(updated.search_arrays(x[[3, 5]], 10)[0].ravel().tolist())
