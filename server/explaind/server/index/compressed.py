"""A compressed (treeAh) index built from examples: its code shape picked on
a trial where the config leaves settings open, its codes and segment written
in list order (codes.py), its open settings tuned and its recall measured on
held-out examples (recall.py, tuning.py).

The trial: the code shapes (code_space.candidate_shapes) are each encoded
over at most TRIAL_ROWS of the examples (all of them below that, else a
sample with as many examples a list), and the one whose cheapest setting
reaching the target costs least is kept; the full index is then encoded once,
in that shape. Its open leaves and candidates are tuned on one half of the
held-out examples and its recall reported on the other half.

Memory stays bounded whatever N: the examples are read in blocks (the
embeddings may be a memory-mapped file), the training sample and the trial
are capped, and what grows with N is the codes, their ids, each example's
segment row and the norms of a normalizing measure. The codes and ids are
held once, in their fast-scan form, while the recall is measured and until
they are saved (plain_codes.py)."""
from __future__ import annotations

import dataclasses
import math

import faiss
import numpy as np

from explaind.server.index import codes, distances, segments
from explaind.server.index.backend import fast_scan
from explaind.server.index.code_space import CodeShape, CodeSpace, Spectrum, candidate_shapes
from explaind.server.index.config import CANDIDATES, IndexPlan, SearchConfig, rerank_count
from explaind.server.index.meta import RecallReport, Tuning
from explaind.server.index.recall import Probe, held_out, query_count, recall_by_count, \
    sample_positions
from explaind.server.index.tuning import Choice, alternatives, best_setting, grids, margin
from explaind.server.index.vectors import MappedVectors

# The trial encodes every shape over at most this many examples (and this many bytes of them).
TRIAL_ROWS = 200_000
TRIAL_BYTES = 256 << 20
# Rows the principal components are computed from.
SPECTRUM_ROWS = 100_000


@dataclasses.dataclass
class Built:
    shell: faiss.IndexIVFPQ                 # the plain index, lists empty (plain_codes.py)
    search_index: faiss.IndexIVFFastScan    # the codes, in their fast-scan form (searched, and saved as plain)
    space: CodeSpace
    vectors: MappedVectors                  # one segment, in list order (segment_rows)
    config: SearchConfig                    # with the tuned candidates, when they were open
    tuning: Tuning | None
    recall: RecallReport


def build(embeddings: np.ndarray, config: SearchConfig, plan: IndexPlan, shape_given: bool,
          segment_path: str | None = None) -> Built:
    """`embeddings` (n, d) originals, possibly memory-mapped; `shape_given`: the
    plan's code shape was asked for (not picked); `segment_path`: where the
    segment is written (None: in memory)."""
    n, d = embeddings.shape
    k = max(1, config.neighbor_count)
    train_rows = codes.training_rows(n, plan.nlist)
    sample = _prepared(embeddings, train_rows, config)
    centroids = codes.train_coarse(sample, plan.nlist, config)
    tuned = bool(config.open_settings) and not shape_given
    note = ""
    if tuned:
        shape, space, note = _trial(embeddings, sample, centroids, config, plan, k)
    else:
        shape, space = CodeShape(d, dims_per_code=max(1, d // max(1, plan.pq_m))), CodeSpace()
    index = codes.codes_index(space.apply(centroids), shape, config, plan.nprobe)
    coded_sample = space.apply(sample)
    del sample
    codes.train_codes(index, coded_sample)
    cells = codes.subcell_centroids(index, coded_sample)
    del coded_sample
    search_index = fast_scan(index)         # empty: encoding fills it, and leaves `index` empty
    encoded = codes.encode(index, space, embeddings, config, 0, cells, segment_path, search_copy=search_index)
    vectors = MappedVectors([encoded.segment], encoded.norms, config, d, segment_rows=encoded.rows)
    probe = Probe(search_index, space, vectors, config)
    measured = measure(probe, config, plan.nprobe, k, tune=tuned, shape=shape)
    index.nprobe = search_index.nprobe = measured.nprobe
    tuning = None
    if tuned:
        tuning = Tuning(leaves=measured.nprobe, candidates=measured.candidates, code_shape=shape.describe(),
                        target=config.recall_target, reason="; ".join(p for p in (measured.reason, note) if p))
    return Built(index, search_index, space, vectors, measured.config, tuning, measured.report)


@dataclasses.dataclass(frozen=True)
class Measured:
    nprobe: int
    candidates: int
    config: SearchConfig        # the candidates tuned in, when they were open
    report: RecallReport
    reason: str = ""


def measure(probe: Probe, config: SearchConfig, nprobe: int, k: int, tune: bool = False,
            shape: CodeShape | None = None, live: np.ndarray | None = None) -> Measured:
    """Recall@k of the index as configured, on held-out examples; with `tune`,
    its open settings picked first on another half of them."""
    vectors = probe.vectors
    live_positions = np.arange(vectors.size) if live is None else np.flatnonzero(live)
    count = query_count(len(live_positions), vectors.dimensions)
    held = held_out(vectors, config, sample_positions(live_positions, 2 * count if tune else count), k, live)
    candidates, reason = rerank_count(config, k), ""
    if tune:
        tuning_half, held = held.part(slice(0, None, 2)), held.part(slice(1, None, 2))
        nprobes, counts = grids(config, probe.nlist, nprobe, k, len(live_positions))
        target = config.recall_target
        choice = best_setting(probe, tuning_half, shape, vectors.dimensions, len(live_positions), nprobes, counts,
                              k, min(1.0, target + margin(target, len(tuning_half), k)))
        nprobe, candidates = choice.nprobe, choice.candidates
        reason = (f"{'reaches' if choice.reached else 'comes nearest'} recall@{k} {target:g} at least cost on "
                  f"{len(tuning_half)} held-out examples: {choice.describe(probe.nlist)}")
        if CANDIDATES in config.open_settings:
            config = dataclasses.replace(config, approximate_neighbors_count=candidates)
    recall = float(recall_by_count(probe, held, nprobe, [candidates], k)[0])
    floor = config.recall_floor
    alts = alternatives(probe, held, config, nprobe, candidates, k, floor) if recall < floor else ()
    report = RecallReport(recall=recall, neighbor_count=k, queries=len(held), floor=floor, alternatives=alts,
                          floor_of=f"the {config.preset} preset" if config.preset else "a treeAhConfig")
    return Measured(nprobe, candidates, config, report, reason)


def _trial(embeddings: np.ndarray, sample: np.ndarray, centroids: np.ndarray, config: SearchConfig,
           plan: IndexPlan, k: int) -> tuple[CodeShape, CodeSpace, str]:
    """The code shape whose cheapest setting reaching the target costs least on a trial."""
    n, d = embeddings.shape
    rows = min(n, TRIAL_ROWS, max(1, TRIAL_BYTES // (4 * d)))
    spectrum = Spectrum.of(sample[:SPECTRUM_ROWS])
    if rows < n:
        picked = np.sort(np.random.default_rng(codes.TRAIN_SEED + 1).choice(n, rows, replace=False))
        originals = segments.gather(embeddings, picked)
        nlist = max(2, round(plan.nlist * rows / n))
        trial_centroids = codes.train_coarse(distances.prepare(originals, config), nlist, config)
    else:
        originals, nlist, trial_centroids = segments.gather(embeddings, np.arange(n)), plan.nlist, centroids
    norms = np.linalg.norm(originals, axis=1).astype(np.float32) if distances.normalizes(config) else None
    vectors = MappedVectors([originals], norms, config, d)
    held = held_out(vectors, config, sample_positions(np.arange(rows), query_count(rows, d)), k)
    given_nprobe = max(1, math.ceil(plan.nprobe * nlist / plan.nlist))
    nprobes, counts = grids(config, nlist, given_nprobe, k, rows)
    target = config.recall_target
    best: tuple[Choice, CodeSpace] | None = None
    measured = []
    for shape in candidate_shapes(d, spectrum if d > 2 else None):
        space = CodeSpace.principal(spectrum.components, shape.dims) if shape.rotated else CodeSpace()
        index = codes.codes_index(space.apply(trial_centroids), shape, config, given_nprobe)
        codes.train_codes(index, space.apply(sample))
        for s, block in segments.blocks(originals):
            coded = space.apply(distances.prepare(block, config))
            index.add_with_ids(coded, np.arange(s, s + len(block), dtype=np.int64))
        choice = best_setting(Probe(fast_scan(index), space, vectors, config), held, shape, d, n, nprobes, counts,
                              k, min(1.0, target + margin(target, len(held), k)))
        measured.append(choice)
        if best is None or choice.better_than(best[0]):
            best = (choice, space)
    assert best is not None
    others = "; ".join(c.describe(nlist) for c in sorted(measured, key=lambda c: c.cost) if c is not best[0])
    note = (f"code shapes measured on {rows} examples ({len(held)} held out, {nlist} leaves): "
            f"{best[0].describe(nlist)}; others: {others}")
    return best[0].shape, best[1], note


def _prepared(embeddings: np.ndarray, rows: np.ndarray | None, config: SearchConfig) -> np.ndarray:
    picked = segments.gather(embeddings, np.arange(len(embeddings)) if rows is None else rows)
    return distances.prepare(picked, config)


def measure_index(search_index: faiss.IndexIVFFastScan, space: CodeSpace, vectors, config: SearchConfig,
                  live: np.ndarray | None) -> RecallReport:
    """Recall of an existing index with its own settings (an update's), on held-out live examples."""
    probe = Probe(search_index, space, vectors, config)
    return measure(probe, config, int(search_index.nprobe), max(1, config.neighbor_count), live=live).report

