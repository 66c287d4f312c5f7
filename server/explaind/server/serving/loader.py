"""Brings one published model version from the store into memory (TF
Serving's Loader): its build files into the local cache, then its servable."""
from __future__ import annotations

import logging
import os
import shutil
import uuid

from ..store.models import ModelRecord, ModelStore
from .servables import Servable, load_servable

log = logging.getLogger(__name__)


class BuildLoader:
    def __init__(self, models: ModelStore, cache_dir: str, use_gpu: bool | None):
        self.models = models
        self.cache_dir = cache_dir
        self.use_gpu = use_gpu

    def record(self, model_id: str) -> ModelRecord | None:
        """The model's record: published, else its building claim, else None."""
        return self.models.get(model_id)

    def published(self, model_id: str) -> ModelRecord | None:
        return self.models.get_published(model_id)

    def load(self, record: ModelRecord) -> Servable:
        build_dir = self._local_build(record) if record.build_id else None
        servable = load_servable(record, build_dir, self.use_gpu)
        log.info("model loaded", extra={"model": record.model.name, "build": record.build_id})
        return servable

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
            self.models.objects.download_dir(self.models.build_prefix(record.model_id, record.build_id), partial)
            try:
                os.rename(partial, local)
            except OSError:
                if not os.path.isdir(local):      # not a lost race: a real error
                    raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return local
