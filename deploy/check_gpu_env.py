#!/usr/bin/env python3
"""Check that an environment holds the GPU install explaind expects; exit 1 if not.

The image's builder stage runs this after `pip install ".[gpu,s3,gcs]"`. It
needs no GPU: it reads the installed distributions' RECORD files and imports
FAISS, which loads its CUDA libraries without talking to a driver.

- Exactly one installed distribution provides the module `faiss`, and it is
  faiss-gpu-cuvs (>= 1.15.1, built with cuVS: only those builds apply
  IDSelector filters on the GPU) and imports, which also proves that its
  cuVS libraries are the release it was built with. faiss-cpu,
  faiss-gpu-cu12 or faiss-gpu beside it would overwrite each other's files.
- Exactly one distribution provides `tensorflow` (tensorflow-cpu beside the
  CUDA build would do the same).
- No two distributions wrote the same file with different contents, except
  the one overlap the GPU extra brings and the Dockerfile settles:
  nvidia-nccl-cu12 (for TensorFlow) and nvidia-nccl-cu13 (for cuVS) both
  ship nvidia/nccl/lib/libnccl.so.2; pip keeps whichever it installed last,
  so the Dockerfile reinstalls nvidia-nccl-cu13 and this checks that the file
  on disk is its copy (NCCL links the CUDA runtime statically and the CUDA 13
  build also serves TensorFlow on the driver the image already requires).
  pip's resolver cannot see such overlaps: they are between different names.

    python check_gpu_env.py [--quiet]
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.metadata as metadata
import re
import sys
from collections import defaultdict
from pathlib import Path

FAISS_DIST = "faiss-gpu-cuvs"
FAISS_MIN = (1, 15, 1)
TENSORFLOW_DIST = "tensorflow"
# path prefix -> (the distributions allowed to share it, the one whose copy must be on disk)
SETTLED_OVERLAPS = {
    "nvidia/nccl/": ({"nvidia-nccl-cu12", "nvidia-nccl-cu13"}, "nvidia-nccl-cu13"),
}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _version_tuple(text: str) -> tuple[int, ...]:
    out = []
    for part in text.split("."):
        digits = re.match(r"\d+", part)
        if not digits:
            break
        out.append(int(digits.group()))
    return tuple(out)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "sha256=" + base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()


def _claims() -> tuple[dict[str, list[tuple[str, str | None]]], dict[str, metadata.Distribution]]:
    """RECORD paths (relative to site-packages) -> [(distribution, recorded hash)]."""
    claims: dict[str, list[tuple[str, str | None]]] = defaultdict(list)
    dists: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions():
        name = _canonical(dist.metadata["Name"] or "")
        if not name or name in dists:
            continue  # a shadowed copy on sys.path; pip sees the first one too
        dists[name] = dist
        for f in dist.files or ():
            path = f.as_posix()
            if ".dist-info/" in path or "__pycache__/" in path:
                continue
            claims[path].append((name, f"{f.hash.mode}={f.hash.value}" if f.hash else None))
    return claims, dists


def problems() -> list[str]:
    out: list[str] = []
    claims, dists = _claims()

    faiss = sorted({n for n, _ in claims.get("faiss/__init__.py", [])})
    if faiss != [FAISS_DIST]:
        out.append(f"the module faiss must come from {FAISS_DIST} alone, found: {faiss or 'none'}"
                   " (faiss-cpu and the classic faiss-gpu wheels do not filter on the GPU,"
                   " and two of them overwrite each other)")
    tf = sorted({n for n, _ in claims.get("tensorflow/__init__.py", [])})
    if tf != [TENSORFLOW_DIST]:
        out.append(f"the module tensorflow must come from {TENSORFLOW_DIST} alone, found: {tf or 'none'}")

    if FAISS_DIST in dists:
        version = dists[FAISS_DIST].version
        if _version_tuple(version) < FAISS_MIN:
            out.append(f"{FAISS_DIST} {version} is older than {'.'.join(map(str, FAISS_MIN))}, the first"
                       " pip wheel with filtered cuVS search that pins its cuVS release")
        try:
            # FAISS's build writes this module only when cuVS is compiled in.
            from faiss import _cuvs_build
            if not getattr(_cuvs_build, "IS_CUVS_BUILD", False):
                out.append("faiss is not a cuVS build (faiss._cuvs_build.IS_CUVS_BUILD is false)")
        except Exception as e:  # ImportError, or faiss's own RuntimeError for missing CUDA wheels
            out.append(f"faiss does not import as a cuVS build: {e!r}")

    not_winners: dict[str, list[str]] = defaultdict(list)
    for path, owners in sorted(claims.items()):
        names = {n for n, _ in owners}
        if len(owners) < 2 or len({h for _, h in owners}) == 1:
            continue  # one owner, or every owner wrote the same bytes
        prefix = next((p for p in SETTLED_OVERLAPS if path.startswith(p)), None)
        if prefix is None or not names <= SETTLED_OVERLAPS[prefix][0]:
            out.append(f"{path} is written by {sorted(names)} with different contents")
            continue
        winner = SETTLED_OVERLAPS[prefix][1]
        wanted = dict(owners).get(winner)
        on_disk = Path(dists[winner].locate_file(path)) if winner in dists else None
        if not wanted or on_disk is None or not on_disk.is_file() or _file_sha256(on_disk) != wanted:
            not_winners[prefix].append(path)
    for prefix, paths in not_winners.items():
        winner = SETTLED_OVERLAPS[prefix][1]
        out.append(f"{len(paths)} files under {prefix} (e.g. {paths[-1]}) are not {winner}'s copies:"
                   f" reinstall it last (pip install --no-deps --force-reinstall {winner}==VERSION)")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quiet", action="store_true", help="print nothing when the check passes")
    args = parser.parse_args(argv)
    found = problems()
    for p in found:
        print(f"check_gpu_env: {p}", file=sys.stderr)
    if found:
        return 1
    if not args.quiet:
        import faiss
        print(f"check_gpu_env: ok: {FAISS_DIST} {faiss.__version__} (cuVS),"
              f" {TENSORFLOW_DIST} {metadata.version(TENSORFLOW_DIST)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
