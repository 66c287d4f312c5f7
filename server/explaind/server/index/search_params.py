"""Search knobs passed with each call, not set on a shared live index (as
ScaNN's `search_batched(q, leaves_to_search=, pre_reorder_num_neighbors=)`):
benchmarks sweep them and tests pin a filtering strategy on one built index,
while the model's own searches keep what its config says."""
from __future__ import annotations

import dataclasses

from explaind.server.index.faiss_search import SearchContext

STRATEGIES = ("subset", "postfilter", "selector")


@dataclasses.dataclass(frozen=True)
class FilterPolicy:
    """The selectivity bands of filtering.py (the numbers there are these
    defaults). `force` names one strategy for every filtered search (tests use
    it to reach each path on small data)."""
    subset_min_rows: int = 4096
    subset_max_rows: int = 65536
    subset_scan_fraction: float = 0.25
    gpu_subset_max_rows: int = 2048
    postfilter_min_fraction: float = 0.2
    postfilter_max_k: int = 2048
    # A crowded search that needs more candidates than this scans every admissible
    # example once instead (a few tags crowd out everything).
    crowding_max_fetch: int = 4096
    force: str | None = None

    def __post_init__(self):
        if self.force is not None and self.force not in STRATEGIES:
            raise ValueError(f"force must be one of {STRATEGIES}, got {self.force!r}")


@dataclasses.dataclass(frozen=True)
class SearchParams:
    """One call's knobs; None keeps the index's own."""
    # IVF lists probed (FAISS's nprobe), at most the lists there are; flat indexes have none
    leaves_to_search: int | None = None
    # the search config's approximateNeighborsCount: candidates a compressed index
    # re-ranks exactly for the model's neighborCount (config.rerank_count)
    approximate_neighbors_count: int | None = None
    filter_policy: FilterPolicy = FilterPolicy()

    def __post_init__(self):
        if self.leaves_to_search is not None and self.leaves_to_search < 1:
            raise ValueError(f"leaves_to_search must be >= 1, got {self.leaves_to_search}")
        if self.approximate_neighbors_count is not None and self.approximate_neighbors_count < 0:
            raise ValueError(f"approximate_neighbors_count must be >= 0, got {self.approximate_neighbors_count}")

    def applied_to(self, context: SearchContext) -> SearchContext:
        """The index's search context with these knobs turned."""
        if self.leaves_to_search is None and self.approximate_neighbors_count is None:
            return context
        config, nprobe = context.config, context.nprobe
        if self.approximate_neighbors_count is not None:
            config = dataclasses.replace(config, approximate_neighbors_count=self.approximate_neighbors_count)
        if self.leaves_to_search is not None and context.nlist:
            nprobe = min(int(self.leaves_to_search), context.nlist)
        return dataclasses.replace(context, config=config, nprobe=nprobe)


DEFAULT = SearchParams()
