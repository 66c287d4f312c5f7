"""Brings one published model version from the store into memory (TF
Serving's Loader): its build files into the local cache, then its servable."""
from __future__ import annotations

import logging
import os
import shutil
import uuid

from ..builds.runners.memory import memory_available
from ..index import row_reads
from ..index.meta import IndexMeta
from ..index.vectors import segment_path
from ..store.models import ModelRecord, ModelStore
from .servables import Servable, load_servable

log = logging.getLogger(__name__)


class BuildLoader:
    def __init__(self, models: ModelStore, cache_dir: str, use_gpu: bool | None,
                 rerank_reads: str = row_reads.AUTO):
        self.models = models
        self.cache_dir = cache_dir
        self.use_gpu = use_gpu
        self.rerank_reads = rerank_reads        # --rerank-reads: auto, mapped or direct

    def record(self, model_id: str) -> ModelRecord | None:
        """The model's record: published, else its building claim, else None."""
        return self.models.get(model_id)

    def published(self, model_id: str) -> ModelRecord | None:
        return self.models.get_published(model_id)

    def load(self, record: ModelRecord) -> Servable:
        build_dir = self._local_build(record) if record.build_id else None
        segment_names = IndexMeta.read(build_dir).segment_names if build_dir else []
        segments_dir = self._local_segments(record, segment_names) if build_dir else None
        reads = self._reads(segments_dir, segment_names)
        servable = load_servable(record, build_dir, self.use_gpu, segments_dir, reads)
        index = servable.index
        log.info("model loaded", extra={"model": record.model.name, "build": record.build_id,
                                        "rerank_reads": index.rerank_reads if index is not None else None})
        if build_dir:
            self._prune_cache(record, segment_names)
        return servable

    def _reads(self, segments_dir: str | None, names: list[str]) -> str:
        """How this model's re-ranks read its segments (`auto`: by their size against this process's memory)."""
        if self.rerank_reads != row_reads.AUTO or not names:
            return row_reads.choose(self.rerank_reads, 0, 1)
        size = sum(os.path.getsize(segment_path(segments_dir, n)) for n in names)
        return row_reads.choose(self.rerank_reads, size, memory_available())

    def _local_build(self, record: ModelRecord) -> str:
        """The build's folder in the cache, copied from the store once. Several
        processes may share the cache (--workers, a shared volume): each downloads
        into its own folder and the first to finish publishes it with a rename;
        the others drop theirs and use it."""
        local = os.path.join(self.cache_dir, record.model_id, record.build_id)
        if os.path.isdir(local):
            return local
        partial = f"{local}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            self.models.download_build(record.model_id, record.build_id, partial)
            try:
                os.rename(partial, local)
            except OSError:
                if not os.path.isdir(local):      # not a lost race: a real error
                    raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return local

    def _prune_cache(self, record: ModelRecord, segment_names: list[str]) -> None:
        """Once a build is loaded, the model's other builds and the segments it does not
        read leave the cache (updates would otherwise pile up their codes). What a
        loaded index still maps stays readable: Linux frees an unlinked file's pages
        only with its last mapping; a loaded index holds the rest of its files in memory."""
        folder = os.path.join(self.cache_dir, record.model_id)
        for name in os.listdir(folder):
            if name not in (record.build_id, "segments") and ".partial-" not in name:
                shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
        segments = os.path.join(folder, "segments")
        if os.path.isdir(segments):
            wanted = {f"{n}.npy" for n in segment_names}
            for name in os.listdir(segments):
                if name not in wanted and ".partial-" not in name:
                    os.unlink(os.path.join(segments, name))

    def _local_segments(self, record: ModelRecord, names: list[str]) -> str:
        """The folder holding the build's vector segments (`names`), each copied once
        per model: builds that an update made share the segments of their base."""
        folder = os.path.join(self.cache_dir, record.model_id, "segments")
        if names:
            os.makedirs(folder, exist_ok=True)
        for name in names:
            local = os.path.join(folder, f"{name}.npy")
            if os.path.exists(local):
                continue
            partial = f"{local}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            try:
                self.models.download_segment(record.model_id, name, partial)
                os.replace(partial, local)
            finally:
                if os.path.exists(partial):
                    os.unlink(partial)
        return folder
