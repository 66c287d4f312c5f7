"""Where a job's output goes: Vertex AI's layout under the output prefix, and
the staging folder it is written to first.

    {prefix}/prediction-{model}-{YYYY_MM_DDThh_mm_ss_sssZ}/   the job's folder, named as Vertex
        explanation.results-00000-of-00002                     names it (the job's create time)
        explanation.results-00001-of-00002                     one JSON line per row explained
        explanation.errors_stats-00000-of-00001                one per row that failed
    (prediction.results-* and prediction.errors_stats-* for a job without explanations)

    {prefix}/.explaind-staging-{job id}/results/part-{first row:012d}
    {prefix}/.explaind-staging-{job id}/errors/part-{first row:012d}

Runners write parts into the staging folder (each part by one writer, named by
its first row, so the parts sort in data set order whichever runner wrote
them). Only a job that completes publishes: its parts move to the job's folder
under their final names, which need the number of files. A local folder moves
in one rename, so a reader sees the whole folder or none; on an object store
each file moves whole, and the job reports its folder only once all have. A
failed or cancelled job removes its staging folder and leaves nothing.
"""
from __future__ import annotations

import dataclasses
import datetime
import os
import posixpath
import re

import fsspec
from fsspec.core import url_to_fs

RESULTS, ERRORS = "results", "errors"
PART = re.compile(r"^part-\d{12}$")
UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def job_folder_name(model_name: str, create_time: datetime.datetime) -> str:
    """prediction-{model}-{time}: Vertex's name, with the time as Vertex writes it (2025_06_13T06_23_35_274Z)."""
    stamp = create_time.astimezone(datetime.timezone.utc)
    when = stamp.strftime("%Y_%m_%dT%H_%M_%S_") + f"{stamp.microsecond // 1000:03d}Z"
    safe = UNSAFE.sub("_", model_name).strip("_")[:100] or "model"
    return f"prediction-{safe}-{when}"


def file_name(explained: bool, errors: bool, index: int, count: int) -> str:
    kind = "explanation" if explained else "prediction"
    return f"{kind}.{'errors_stats' if errors else 'results'}-{index:05d}-of-{count:05d}"


def part_name(first_row: int) -> str:
    return f"part-{first_row:012d}"


@dataclasses.dataclass(frozen=True)
class JobOutput:
    """One job's staging folder and final folder under its output prefix."""
    prefix: str                  # the output prefix, as checked against --allowed-uri-prefix
    job_id: str
    folder_name: str             # job_folder_name(...)

    @property
    def staging(self) -> str:
        return _join(self.prefix, f".explaind-staging-{self.job_id}")

    @property
    def folder(self) -> str:
        return _join(self.prefix, self.folder_name)

    def staged(self, kind: str) -> str:
        return staged_folder(self.staging, kind)

    def publish(self, explained: bool) -> tuple[list[str], list[str]]:
        """Moves the staged parts into the job's folder under their final names; returns
        (result files, error files), relative to the folder. FileExistsError when the
        folder exists already (nothing is overwritten)."""
        fs, staging = url_to_fs(self.staging)
        _, folder = url_to_fs(self.folder)
        if fs.exists(folder):
            raise FileExistsError(f"{self.folder} exists already")
        moves, names = [], {RESULTS: [], ERRORS: []}
        for kind in (RESULTS, ERRORS):
            parts = sorted(p for p in _names(fs, posixpath.join(staging, kind)) if PART.match(p))
            for i, part in enumerate(parts):
                final = file_name(explained, kind == ERRORS, i, len(parts))
                moves.append((posixpath.join(staging, kind, part), final))
                names[kind].append(final)
        if _is_local(fs):
            # Named in place, then the whole folder renamed: it appears complete or not at all.
            flat = os.path.join(staging, "published")
            os.makedirs(flat)
            for source, final in moves:
                os.rename(source, os.path.join(flat, final))
            os.makedirs(os.path.dirname(folder), exist_ok=True)
            os.rename(flat, folder)
        else:
            for source, final in moves:
                fs.mv(source, posixpath.join(folder, final))
        self.discard()
        return names[RESULTS], names[ERRORS]

    def discard(self) -> None:
        """Removes the staging folder (a failed or cancelled job, or what publishing left)."""
        fs, staging = url_to_fs(self.staging)
        if fs.exists(staging):
            fs.rm(staging, recursive=True)


def staged_folder(staging: str, kind: str) -> str:
    """The folder of a staging folder's RESULTS or ERRORS parts."""
    return _join(staging, kind)


def open_part(folder: str, first_row: int):
    """A new part file in a staging folder, for writing bytes."""
    fs, path = url_to_fs(folder)
    if _is_local(fs):
        os.makedirs(path, exist_ok=True)
    return fs.open(posixpath.join(path, part_name(first_row)), "wb")


def _names(fs, path: str) -> list[str]:
    try:
        return [posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False)]
    except FileNotFoundError:
        return []


def _join(prefix: str, name: str) -> str:
    return prefix.rstrip("/") + "/" + name


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocol or "local" in protocol
