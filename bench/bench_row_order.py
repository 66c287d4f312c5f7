"""How many 4 KB pages a query's re-ranked candidates touch under other
orders of the rows inside each list: what a layout of the segment could save
a cold query (bench_disk_reads.py measures the one written).

    .venv/bin/python bench/bench_row_order.py [--shape lowdim] [--n 200000] [--queries 200] [--candidates 100]

Builds a treeAh index as bench_disk_reads.py does (leafNodeEmbeddingCount
1000, --candidates re-ranked), takes each query's candidates by code (the
rows a search re-ranks), and counts the distinct pages (PAGE / (d x 4) rows
each) they fall on with each list's rows ordered:

  written      as the build writes them (by residual cell: codes.py)
  position     by position (the data's order)
  top PC       by the projection on the list's first principal direction
  bisection    by recursive halving at the median of the first principal
               direction, down to one page of rows (a k-d tree's leaf order)

Lists stay contiguous in every order (a query's candidates come from the
lists it probes). One page a candidate is the worst case (8x the candidate
rows' bytes at d = 128); the goal of 4x needs two candidates a page.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ann_data  # noqa: E402 - the bench's data sets, beside this file

from explaind.server.index import ExampleIndex, search_config_from_json  # noqa: E402
from explaind.server.index.recall import Probe  # noqa: E402
from explaind.server.index.segments import PAGE  # noqa: E402


def first_direction(points: np.ndarray) -> np.ndarray:
    centered = points - points.mean(axis=0)
    return centered @ np.linalg.svd(centered[:2048], full_matrices=False)[2][0]


def bisection(points: np.ndarray, per_page: int) -> np.ndarray:
    """Order of `points` by recursive halving (halves rounded to whole pages)."""
    out: list[int] = []
    todo = [np.arange(len(points))]
    while todo:
        rows = todo.pop()
        if len(rows) <= per_page:
            out.extend(rows.tolist())
            continue
        order = rows[np.argsort(first_direction(points[rows]))]
        half = max(per_page, (len(rows) // 2 + per_page - 1) // per_page * per_page)
        todo += [order[half:], order[:half]]        # first half first
    return np.array(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ann_data.add_data_arguments(parser)
    args = parser.parse_args()
    x, queries = ann_data.make(args.shape, args.n, args.queries, args.d)
    config = search_config_from_json({
        "dimensions": args.d, "distanceMeasureType": "SQUARED_L2_DISTANCE",
        "approximateNeighborsCount": args.candidates,
        "algorithmConfig": {"treeAhConfig": {"leafNodeEmbeddingCount": 1000}}}, 10, "config")
    index = ExampleIndex.build(x, [str(i) for i in range(args.n)], None, None, config, use_gpu=False)
    c = index.contents
    probe = Probe(c.search_index, c.code_space, c.vectors, c.config)
    candidates = probe.candidates(queries, index.info.nprobe, args.candidates)
    _, lists = c.search_index.quantizer.search(c.code_space.apply(x), 1)
    lists = lists[:, 0]
    members = np.argsort(lists, kind="stable")
    bounds = np.searchsorted(lists[members], np.arange(c.search_index.nlist + 1))
    per_page = max(1, PAGE // (args.d * 4))

    def within_lists(order_of) -> np.ndarray:
        rows = np.empty(args.n, np.int64)
        for a, b in zip(bounds[:-1], bounds[1:]):
            if b > a:
                rows[members[a:b][order_of(members[a:b])]] = np.arange(a, b)
        return rows

    orders = {"written": np.asarray(c.vectors.segment_rows, np.int64),
              "position": within_lists(lambda m: np.arange(len(m))),
              "top PC": within_lists(lambda m: np.argsort(first_direction(x[m]))),
              "bisection": within_lists(lambda m: bisection(x[m], per_page))}
    lists_hit = np.mean([len(np.unique(lists[c_[c_ >= 0]])) for c_ in candidates])
    print(f"{args.shape}: N={args.n} d={args.d} {index.info.index_type}, {index.info.nprobe} leaves searched, "
          f"{args.candidates} candidates from {lists_hit:.1f} lists a query, {per_page} rows a page")
    for name, rows in orders.items():
        pages = np.mean([len(np.unique(rows[c_[c_ >= 0]] // per_page)) for c_ in candidates])
        print(f"  {name:10s} {pages:6.1f} pages a query: {pages * PAGE / (args.candidates * args.d * 4):5.2f}x "
              f"the candidate rows' bytes")


if __name__ == "__main__":
    main()
