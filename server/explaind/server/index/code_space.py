"""The space a compressed index's codes and lists live in, and the shapes of
its codes.

A code shape is how many dimensions are coded and how many share one 4-bit
code. The coded dimensions are the prepared vectors' own (all d of them) or
their first `dims` principal components (a rotation computed from the
training sample): on data whose variance lies in a few directions (latent
spaces, ReLU features) the codes of those directions rank candidates almost
as well as codes of every dimension, for a fraction of the bytes a query
scans. The exact re-rank always reads the full vectors, so the shape moves
cost and the candidates needed, never the distances returned. The build
measures the shapes on its data and keeps the cheapest (tuning.py).

A rotation is orthonormal, so squared L2 and inner products between rotated
vectors are those of the originals less what the dropped components held;
no centering is needed (differences and the ranking of inner products with
one query do not see a common offset)."""
from __future__ import annotations

import dataclasses

import numpy as np

# Shares of the variance the candidate rotations keep (tuning.py measures each);
# on bench/bench_ann.py's shapes the cheapest kept 90% (points near a subspace,
# ReLU features) or 95% (a trained model's latent space).
VARIANCE_KEPT = (0.9, 0.95, 0.99)
# A rotation keeping more than this share of the dimensions saves too little to try.
MAX_KEPT_SHARE = 0.8
# Kept dimensions come in multiples of 4: fast-scan packs codes in pairs, and a
# GPU twin needs its 8-bit sub-quantizers to divide them (gpu_codes.py).
ROUND_DIMS = 4


@dataclasses.dataclass(frozen=True)
class CodeShape:
    dims: int                   # dimensions coded
    dims_per_code: int = 1      # dimensions sharing one 4-bit code
    rotated: bool = False       # principal components (True) or the vectors' own dimensions

    @property
    def pq_m(self) -> int:
        """Sub-quantizers: 4-bit codes a vector."""
        return -(-self.dims // self.dims_per_code)

    @property
    def code_bytes(self) -> int:
        return (self.pq_m + 1) // 2

    def describe(self) -> str:
        """As IndexKind.faiss_description writes it, without the lists."""
        return f"{f'PCA{self.dims},' if self.rotated else ''}PQ{self.pq_m}x4fs"


class CodeSpace:
    """What turns prepared vectors into the codes' input: nothing, or a (d, dims) rotation."""

    def __init__(self, rotation: np.ndarray | None = None):
        self.rotation = None if rotation is None else np.ascontiguousarray(rotation, dtype=np.float32)

    @property
    def rotated(self) -> bool:
        return self.rotation is not None

    def dims(self, d: int) -> int:
        return d if self.rotation is None else int(self.rotation.shape[1])

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Prepared rows (n, d) -> the codes' input (n, dims), contiguous float32."""
        if self.rotation is None:
            return np.ascontiguousarray(x, dtype=np.float32)
        return np.ascontiguousarray(np.asarray(x, dtype=np.float32) @ self.rotation)

    @classmethod
    def principal(cls, components: np.ndarray, dims: int) -> "CodeSpace":
        return cls(components[:, :dims])


@dataclasses.dataclass(frozen=True)
class Spectrum:
    """The training sample's principal components (columns, by decreasing variance)."""
    components: np.ndarray      # (d, d)
    variance: np.ndarray        # (d,)

    @classmethod
    def of(cls, sample: np.ndarray) -> "Spectrum":
        x = np.asarray(sample, dtype=np.float64)
        x = x - x.mean(axis=0)
        cov = x.T @ x / max(1, len(x) - 1)
        variance, components = np.linalg.eigh(cov)
        order = np.argsort(variance)[::-1]
        return cls(components[:, order].astype(np.float32), np.maximum(variance[order], 0.0))

    def dims_keeping(self, share: float) -> int:
        """Fewest components whose variance is `share` of the total, rounded up
        to a multiple of ROUND_DIMS."""
        total = float(self.variance.sum())
        if total <= 0:
            return ROUND_DIMS
        k = int(np.searchsorted(np.cumsum(self.variance) / total, share - 1e-12)) + 1
        return min(len(self.variance), -(-k // ROUND_DIMS) * ROUND_DIMS)


def candidate_shapes(d: int, spectrum: Spectrum | None) -> list[CodeShape]:
    """The shapes a build with open settings measures: every dimension coded,
    one or two to a code, and the rotations keeping VARIANCE_KEPT of the
    variance in few enough dimensions to matter."""
    shapes = [CodeShape(d)]
    if d % 2 == 0 and d >= 4:
        shapes.append(CodeShape(d, dims_per_code=2))
    if spectrum is not None:
        kept = sorted({spectrum.dims_keeping(share) for share in VARIANCE_KEPT})
        shapes += [CodeShape(k, rotated=True) for k in kept if k <= MAX_KEPT_SHARE * d]
    return shapes
