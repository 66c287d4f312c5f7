"""Crowding: at most c returned neighbors share a crowding tag, greedy in
distance order (docs/semantics.md, Crowding). Tags are integer codes, -1 for
an example without a tag (never limited)."""
from __future__ import annotations

import numpy as np


def encode_tags(tags: list[str | None], known: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Tags -> (int32 code per example, -1 for none or ""; vocabulary). `known`:
    an existing vocabulary to extend (codes already given keep their meaning)."""
    vocab: dict[str, int] = {t: i for i, t in enumerate(known or [])}
    codes = np.fromiter(
        (-1 if not t else vocab.setdefault(t, len(vocab)) for t in tags), dtype=np.int32, count=len(tags))
    return codes, list(vocab)


def keep_mask(ids: np.ndarray, codes: np.ndarray, crowding_count: int, k: int) -> np.ndarray:
    """ids: (r, K) candidate positions sorted nearest first, -1 = none.
    Returns a (r, K) boolean mask of the candidates kept: valid, within the
    crowding limit of their tag (counting only nearer candidates of the row),
    and among the first k such. crowding_count 0 = no limit."""
    valid = ids >= 0
    keep = valid.copy()
    if crowding_count > 0 and ids.size:
        cand = np.where(valid, codes[np.where(valid, ids, 0)], -1)
        rr, cc = np.nonzero(cand >= 0)  # row-major: nearer candidates first in each row
        if rr.size:
            width = int(cand.max()) + 1
            keys = rr.astype(np.int64) * width + cand[rr, cc]
            order = np.argsort(keys, kind="stable")
            sk = keys[order]
            starts = np.r_[0, np.flatnonzero(sk[1:] != sk[:-1]) + 1]
            sizes = np.diff(np.r_[starts, sk.size])
            occ = np.arange(sk.size) - np.repeat(starts, sizes)
            occurrence = np.empty_like(occ)
            occurrence[order] = occ
            keep[rr, cc] = occurrence < crowding_count
    return keep & (np.cumsum(keep, axis=1) <= k)


def crowded_top_k(dist: np.ndarray, positions: np.ndarray, codes: np.ndarray,
                  crowding_count: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact crowded k nearest from all candidates of one query at once
    (dist, positions: 1-D). Greedy in distance order keeps exactly each tag's
    crowding_count nearest plus every untagged candidate, so: rank within tag,
    drop ranks >= c, take the k nearest of the rest."""
    tag = codes[positions]
    order = np.lexsort((positions, dist, tag))  # by tag, then distance (ties: position)
    st = tag[order]
    starts = np.r_[0, np.flatnonzero(st[1:] != st[:-1]) + 1]
    rank = np.arange(st.size) - np.repeat(starts, np.diff(np.r_[starts, st.size]))
    kept = order[(st < 0) | (rank < crowding_count) | (crowding_count <= 0)]
    kept = kept[np.lexsort((positions[kept], dist[kept]))][:k]
    return dist[kept], positions[kept]
