"""Model records and their built artifacts in the store.

Layout under the store root:
  models/{id}/building.json     claim of a build or update in progress (created exclusively)
  models/{id}/builds/{build}/   index files of one build (staging until published)
  models/{id}/segments/{build}.npy  full vectors a compressed index's build added
                                (immutable; later builds of the model share them)
  models/{id}/builds/{build}/shards/  a Ray build's embedding shards, while it runs
  models/{id}/model.json        the published record; written last, so a model
                                is served only once everything it names exists
A failed or cancelled build removes its staging folder, its segment and its
claim, so it publishes nothing and the id can be used again. An update holds the
same claim while the published record keeps serving; publishing its build
keeps the builds before it only as far as the previous one.
"""
from __future__ import annotations

import dataclasses
import logging

from explaind.v1 import model_pb2

from ..errors import AlreadyExists, FailedPrecondition, NotFound
from ..model_ids import is_stored_model_id
from . import records
from .objects import KeyExists, ObjectStore

PUBLISHED = "model.json"
CLAIM = "building.json"
log = logging.getLogger(__name__)


@dataclasses.dataclass
class ModelRecord:
    model: model_pb2.Model
    operation: str = ""          # the operation that built it
    build_id: str = ""           # folder under builds/ holding the index ("" for models without one)
    search_config: dict | None = None

    @property
    def model_id(self) -> str:
        return self.model.name.split("/", 1)[1]

    def to_bytes(self) -> bytes:
        return records.dumps({
            "model": records.message_to_dict(self.model),
            "operation": self.operation,
            "build_id": self.build_id,
            "search_config": self.search_config,
        })

    @classmethod
    def from_bytes(cls, data: bytes) -> "ModelRecord":
        d = records.loads(data)
        return cls(
            model=records.dict_to_message(d["model"], model_pb2.Model()),
            operation=d.get("operation", ""),
            build_id=d.get("build_id", ""),
            search_config=d.get("search_config"),
        )


class ModelStore:
    """The models' records and files; callers name models and builds, never keys."""

    def __init__(self, objects: ObjectStore):
        self._objects = objects
        # model id -> (version of its model.json, build id): every replica polls
        # published_builds(), and a record is re-read only when it was rewritten.
        self._published: dict[str, tuple[tuple, str]] = {}

    # --- claims (builds in progress) ---
    def claim(self, record: ModelRecord) -> None:
        """Marks the model as building; ALREADY_EXISTS if the id is taken."""
        model_id = record.model_id
        if self._objects.exists(f"models/{model_id}/{PUBLISHED}"):
            raise AlreadyExists(f"model {model_id!r} already exists", field="model_id")
        try:
            self._objects.create(f"models/{model_id}/{CLAIM}", record.to_bytes())
        except KeyExists:
            raise AlreadyExists(f"model {model_id!r} is already being built", field="model_id") from None

    def claim_update(self, record: ModelRecord) -> None:
        """Marks a published model as being updated (record: the claim, naming the
        update's operation and staging build). One update of a model at a time,
        across replicas: FAILED_PRECONDITION while another holds the claim."""
        try:
            self._objects.create(f"models/{record.model_id}/{CLAIM}", record.to_bytes())
        except KeyExists:
            running = self.get_claim(record.model_id)
            raise FailedPrecondition(
                f"{record.model.name} is being built or updated by {running.operation if running else 'another'} "
                "operation; wait for it (updates of one model run one at a time)", field="model") from None

    def get_claim(self, model_id: str) -> ModelRecord | None:
        data = self._objects.read(f"models/{model_id}/{CLAIM}")
        return ModelRecord.from_bytes(data) if data is not None else None

    def release_claim(self, model_id: str) -> None:
        self._objects.delete(f"models/{model_id}/{CLAIM}")

    def release_own_claim(self, model_id: str, operation: str) -> None:
        """Drops the claim only if `operation` holds it: after a long silence (a store
        outage) another replica may have ended that build and a new upload claimed the id."""
        claim = self.get_claim(model_id)
        if claim is not None and claim.operation == operation:
            self.release_claim(model_id)

    @classmethod
    def at(cls, url: str) -> "ModelStore":
        """The store at `url` (its `uri`), as another process (a build process) opens it."""
        return cls(ObjectStore(url))

    @property
    def uri(self) -> str:
        """A URL other processes (a build process, Ray workers) open this store with."""
        return self._objects.uri("")

    # --- builds ---
    def _build_prefix(self, model_id: str, build_id: str) -> str:
        return f"models/{model_id}/builds/{build_id}"

    def _segments_prefix(self, model_id: str) -> str:
        return f"models/{model_id}/segments"

    def shards_prefix(self, model_id: str, build_id: str) -> str:
        """Where a Ray build's actors leave embedding shards (the build removes them)."""
        return f"{self._build_prefix(model_id, build_id)}/shards"

    def upload_build(self, model_id: str, build_id: str, local_dir: str) -> int:
        """A build's files from `local_dir` into the store; returns their bytes."""
        return self._objects.upload_dir(local_dir, self._build_prefix(model_id, build_id))

    def upload_segments(self, model_id: str, local_dir: str) -> int:
        """The vector segments in `local_dir` (named {build}.npy) into the model's segments."""
        return self._objects.upload_dir(local_dir, self._segments_prefix(model_id))

    def download_build(self, model_id: str, build_id: str, local_dir: str) -> None:
        self._objects.download_dir(self._build_prefix(model_id, build_id), local_dir)

    def download_segment(self, model_id: str, name: str, local_path: str) -> None:
        self._objects.download(f"{self._segments_prefix(model_id)}/{name}.npy", local_path)

    def read_build_file(self, model_id: str, build_id: str, name: str) -> bytes | None:
        """One file of a build (None if absent)."""
        return self._objects.read(f"{self._build_prefix(model_id, build_id)}/{name}")

    def discard_build(self, model_id: str, build_id: str) -> None:
        self._objects.delete_prefix(self._build_prefix(model_id, build_id))
        self._objects.delete(f"{self._segments_prefix(model_id)}/{build_id}.npy")

    def discard_all_builds(self, model_id: str) -> None:
        """For a model that was never published: every staged build is garbage."""
        self._objects.delete_prefix(f"models/{model_id}/builds")
        self._objects.delete_prefix(self._segments_prefix(model_id))

    def prune(self, model_id: str, keep_builds: set[str], keep_segments: set[str]) -> None:
        """Removes the model's builds and segments that none of those kept uses."""
        for build in self._objects.list(f"models/{model_id}/builds"):
            if build not in keep_builds and not build.startswith("."):
                self._objects.delete_prefix(self._build_prefix(model_id, build))
        for name in self._objects.list(self._segments_prefix(model_id)):
            if name.endswith(".npy") and name[:-len(".npy")] not in keep_segments:
                self._objects.delete(f"{self._segments_prefix(model_id)}/{name}")

    def publish(self, record: ModelRecord, release: bool = True) -> None:
        """Writes the published record (the build's files must already be in place), then
        drops the claim (`release`: an update drops it itself, once it pruned). Once the
        record is written the model is published: a claim the store failed to drop just
        then is clutter (get() reads the published record first; delete removes it)."""
        self._objects.write(f"models/{record.model_id}/{PUBLISHED}", record.to_bytes())
        if not release:
            return
        try:
            self.release_claim(record.model_id)
        except Exception as e:  # noqa: BLE001 - the model is published; the claim is clutter
            log.warning("claim of a published model not removed: %s", e, extra={"model": record.model.name})

    # --- reading ---
    def get(self, model_id: str) -> ModelRecord | None:
        """The published record, else the building claim, else None."""
        if not is_stored_model_id(model_id):     # keys are built from it: no path tricks reach the store
            return None
        for name in (PUBLISHED, CLAIM):
            data = self._objects.read(f"models/{model_id}/{name}")
            if data is not None:
                return ModelRecord.from_bytes(data)
        return None

    def get_published(self, model_id: str) -> ModelRecord | None:
        if not is_stored_model_id(model_id):
            return None
        data = self._objects.read(f"models/{model_id}/{PUBLISHED}")
        return ModelRecord.from_bytes(data) if data is not None else None

    def require(self, model_id: str, field: str = "name") -> ModelRecord:
        record = self.get(model_id)
        if record is None:
            raise NotFound(f"model models/{model_id[:200]} not found", field=field)
        return record

    def list_ids(self) -> list[str]:
        return [name for name in self._objects.list("models") if not name.startswith(".")]

    def published_builds(self) -> dict[str, str]:
        """model id -> build id of every published model (what replicas should serve)."""
        out = {}
        for key, version in self._objects.versions("models").items():
            parts = key.split("/")
            if len(parts) != 3 or parts[2] != PUBLISHED:
                continue
            model_id = parts[1]
            cached = self._published.get(model_id)
            if cached is None or cached[0] != version:
                record = self.get_published(model_id)
                if record is None:
                    continue
                cached = (version, record.build_id)
                self._published[model_id] = cached
            out[model_id] = cached[1]
        for gone in self._published.keys() - out.keys():
            del self._published[gone]
        return out

    def delete(self, model_id: str) -> None:
        """Unpublishes first (readers stop seeing it), then removes its files."""
        self._objects.delete(f"models/{model_id}/{PUBLISHED}")
        self._objects.delete_prefix(f"models/{model_id}")
