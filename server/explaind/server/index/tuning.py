"""Settings a treeAh build picks where the config leaves them open, by
measuring its own data (recall.py), and the warning when recall is short.

Open settings (config.SearchConfig.open_settings): the leaves searched, the
candidates re-ranked, and with either of them the codes' shape
(code_space.py). For each shape the build measures recall@k over a grid of
leaves and candidates on held-out examples and keeps, of the settings that
reach the target (the preset's floor, or CONFIG_TARGET), the one with the
least estimated cost a query (`query_cost`). Settings the config gives are
used as given; when the measured recall is below the floor, the build
measures what raising each given setting would give (`alternatives`).

The cost model counts what a single-threaded query does: the coarse
quantizer, the lookup table of its codes (a term per sub-quantizer), the
codes scanned (a term per code and per code byte), and the candidates
re-ranked (a random read and distance of a full row each). Its constants were
fitted to CPU time per query on bench/bench_ann.py's shapes (FAISS 1.15,
AVX-512, one thread: within 7% at the median, 40% at worst); only their
ratios matter, to compare settings on one machine.
"""
from __future__ import annotations

import dataclasses
import math


from explaind.server.index.code_space import CodeShape
from explaind.server.index.config import CANDIDATES, LEAVES, SearchConfig, rerank_count
from explaind.server.index.meta import Alternative
from explaind.server.index.recall import HeldOut, Probe, RecallCurve, recall_by_count

# Microseconds a query (see the module doc).
COST_BASE = 1.0
COST_PER_SUBQUANTIZER = 0.04        # lookup table
COST_PER_LIST = 0.3                 # each list probed
COST_PER_CODE = 0.00043             # each code scanned
COST_PER_CODE_BYTE = 0.000027       # ... and each of its bytes (2 sub-quantizers a byte)
COST_PER_CANDIDATE_DIM = 0.0013     # re-rank: a candidate's full row, per dimension
COST_PER_CENTROID_DIM = 0.00005     # coarse quantizer
# The candidate counts measured go up to this many per neighbor asked (and at least MIN_MOST_CANDIDATES).
MOST_CANDIDATES_PER_NEIGHBOR = 100
MIN_MOST_CANDIDATES = 1000
# Each step of the grids multiplies the last by about this.
STEP = 1.2


def query_cost(shape: CodeShape, d: int, nlist: int, nprobe: int, scanned: float, candidates: int) -> float:
    """Estimated microseconds of one query (see the module doc)."""
    return (COST_BASE + COST_PER_CENTROID_DIM * nlist * shape.dims + COST_PER_SUBQUANTIZER * shape.pq_m
            + COST_PER_LIST * nprobe + scanned * (COST_PER_CODE + COST_PER_CODE_BYTE * 2 * shape.code_bytes)
            + COST_PER_CANDIDATE_DIM * d * candidates)


def ladder(first: int, last: int) -> list[int]:
    """first, then steps of about STEP (each at least 1 more), up to last included."""
    out = [first]
    while out[-1] < last:
        out.append(min(last, max(out[-1] + 1, math.ceil(out[-1] * STEP))))
    return out


@dataclasses.dataclass(frozen=True)
class Choice:
    shape: CodeShape
    nprobe: int
    candidates: int
    recall: float
    cost: float                 # estimated microseconds a query
    reached: bool               # recall >= the target

    def better_than(self, other: "Choice | None") -> bool:
        if other is None:
            return True
        if self.reached != other.reached:
            return self.reached
        if self.reached:
            return self.cost < other.cost
        # target out of reach: the most recall, then the least cost
        return (self.recall, -self.cost) > (other.recall, -other.cost)

    def describe(self, nlist: int) -> str:
        return (f"{self.shape.describe()}, {self.nprobe} of {nlist} leaves, {self.candidates} candidates: "
                f"recall {self.recall:.3f}, ~{self.cost:.1f} us a query")


# Standard errors above the target the tuning aims (see `margin`).
MARGIN_ERRORS = 2.5


def margin(target: float, queries: int, k: int) -> float:
    """Tuned on one half of the held-out examples, the setting picked is the
    first of many to pass on that sample (so its estimate is biased up), and
    queries from outside the index are another sample again: aim
    MARGIN_ERRORS standard errors above the target, so that what the other
    half reports, and what users meet, rarely falls below it."""
    return MARGIN_ERRORS * math.sqrt(max(target * (1 - target), 1e-4) / max(1, queries * k))


def grids(config: SearchConfig, nlist: int, given_nprobe: int, k: int, size: int) -> tuple[list[int], list[int]]:
    """(leaves, candidate counts) to measure: the given value alone where the config gives it."""
    nprobes = ladder(1, nlist) if LEAVES in config.open_settings else [given_nprobe]
    if CANDIDATES in config.open_settings:
        most = min(size - 1, max(MIN_MOST_CANDIDATES, MOST_CANDIDATES_PER_NEIGHBOR * k))
        counts = ladder(k, max(k, most))
    else:
        counts = [rerank_count(config, k)]
    return nprobes, counts


def best_setting(probe: Probe, held: HeldOut, shape: CodeShape, d: int, size: int, nprobes: list[int],
                 counts: list[int], k: int, target: float) -> Choice:
    """The cheapest (leaves, candidates) reaching `target` on `held` (or the
    most recall, when none does). `size`: the examples the costs are for (a
    trial's lists are scaled up to it)."""
    scale = size / max(1, probe.index.ntotal)
    best: Choice | None = None
    last_recall, flat_steps = -1.0, 0
    for nprobe in nprobes:
        scanned = probe.scanned(held.queries, nprobe) * scale
        if best is not None and best.reached and \
                query_cost(shape, d, probe.nlist, nprobe, scanned, counts[0]) >= best.cost:
            break               # every later setting costs more
        curve = RecallCurve(probe, held, nprobe, counts[-1], k)
        for count in counts:
            value = curve.at(count)
            choice = Choice(shape, nprobe, count, value, query_cost(shape, d, probe.nlist, nprobe, scanned, count),
                            value >= target)
            if choice.better_than(best):
                best = choice
            if choice.reached:
                break           # more candidates at this many leaves only cost more
        top = curve.at(counts[-1])
        flat_steps = flat_steps + 1 if top <= last_recall + 1e-4 else 0
        last_recall = max(last_recall, top)
        if flat_steps >= 3 and not (best is not None and best.reached):
            break               # more leaves stopped helping: the candidates are what is short
    assert best is not None
    return best


def alternatives(probe: Probe, held: HeldOut, config: SearchConfig, nprobe: int, count: int, k: int,
                 floor: float) -> tuple[Alternative, ...]:
    """What raising each setting the config gives would measure (on `held`):
    for the candidates, the fewest on the grid reaching the floor and 4x (or
    2x and 4x); for the leaves, 2x and 4x; and, when neither alone reaches
    the floor, both raised together."""
    out: list[Alternative] = []
    size, nlist = int(probe.index.ntotal), probe.nlist
    given = config.approximate_neighbors_count
    most = min(size - 1, max(MIN_MOST_CANDIDATES, MOST_CANDIDATES_PER_NEIGHBOR * k))
    candidates_given = CANDIDATES not in config.open_settings or given
    leaves_given = LEAVES not in config.open_settings and nprobe < nlist
    if candidates_given:
        now = given or count
        grid = [c for c in ladder(now, max(now, most)) if c > now]
        if grid:
            measured = dict(zip(grid, recall_by_count(probe, held, nprobe, grid, k)))
            reaching = [c for c in grid if measured[c] >= floor]
            picks = sorted({reaching[0], min(grid[-1], 4 * reaching[0])} if reaching
                           else {min(grid[-1], 2 * now), min(grid[-1], 4 * now)})
            out += [Alternative("approximateNeighborsCount", now, c, float(measured.get(c) or _one(
                probe, held, nprobe, c, k))) for c in picks]
    percent_now = config.leaf_nodes_to_search_percent if LEAVES not in config.open_settings \
        else round(100 * nprobe / nlist, 2)
    widest = nprobe
    if leaves_given:
        for factor in (2, 4):
            widest = min(nlist, nprobe * factor)
            out.append(Alternative("leafNodesToSearchPercent", percent_now, round(100 * widest / nlist, 2),
                                   _one(probe, held, widest, count, k)))
            if widest == nlist:
                break
    if candidates_given and leaves_given and out and max(a.recall for a in out) < floor:
        both = max(a.value for a in out if a.setting == "approximateNeighborsCount")
        out.append(Alternative(f"leafNodesToSearchPercent {percent_now:g} -> {100 * widest / nlist:g} and "
                               "approximateNeighborsCount", given or count, both,
                               _one(probe, held, widest, int(both), k)))
    return tuple(out)


def _one(probe: Probe, held: HeldOut, nprobe: int, count: int, k: int) -> float:
    return float(recall_by_count(probe, held, nprobe, [count], k)[0])
