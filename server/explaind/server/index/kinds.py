"""What an index is made of: its kind, the one name for it in code and in
meta.json ("kind").

Two neighbouring names mean other things: a search config's `algorithm` is
what the model asked (Vertex's bruteForce or treeAh), which `plan_index` turns
into a kind by the example count (treeAh under config.EXACT_BELOW examples
gets a flat index); the Model's `index_type` is FAISS's description of the
built kind with its sizes ("IVF40,PQ16x4fs"), `IndexKind.faiss_description`."""
from __future__ import annotations

import enum


class IndexKind(str, enum.Enum):
    # exact: FAISS's flat storage holds the vectors, in RAM
    FLAT = "flat"
    # treeAh: the lists hold 4-bit codes (RAM); the full vectors stay in memory-mapped
    # segment files and re-rank the candidates exactly
    IVF_PQ = "ivf_pq"
    # treeAh as saved by format 1: full vectors in the lists (loads only)
    IVF_FLAT = "ivf_flat"

    @property
    def compressed(self) -> bool:
        """Codes in the lists, re-ranked against full vectors kept in segment files
        (which an update appends to instead of rebuilding)."""
        return self is IndexKind.IVF_PQ

    def faiss_description(self, nlist: int, pq_m: int, code_dims: int = 0) -> str:
        """In FAISS's factory order; code_dims: codes of that many principal components."""
        if self is IndexKind.FLAT:
            return "Flat"
        if self is IndexKind.IVF_FLAT:
            return f"IVF{nlist},Flat"
        return f"{f'PCA{code_dims},' if code_dims else ''}IVF{nlist},PQ{pq_m}x4fs"
