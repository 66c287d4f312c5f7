"""What an upload builds, one recipe per kind of explanation.

`recipe_for` is the build side's one branch on the explanation method. It
checks at upload time what can be checked without running the model, so a bad
request fails with INVALID_ARGUMENT at once instead of as a failed operation.
A recipe's `build` then runs inside a BuildJob, reporting its stages through
the job's progress object, and returns the index to publish (None when the
model has no examples).
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Protocol

import fsspec
import numpy as np
from google.protobuf import json_format

from explaind.v1 import model_pb2, model_service_pb2

from ..errors import DimensionMismatch, FailedPrecondition, InvalidArgument, attach_fields, enum_name
from ..index.config import DEFAULT_NEIGHBOR_COUNT, SearchConfig, search_config_from_json, \
    search_config_from_presets
from ..index.example_index import Additions, ExampleIndex
from ..index.meta import IndexMeta
from ..methods import Method, latent_source, method_of
from ..runtime.tensorflow_check import require_tensorflow
from ..security import uris as allowed_uris
from . import readers
from .embedding import EmbeddedExamples, Embedder, LocalEmbedder, check_example_count
from .readers.source import DataSource, data_source
from .readers.budget import read_budget
from .staging import staged_locally

Stage = model_service_pb2.UploadModelOperationMetadata.Stage
EXAMPLES = "model.explanation_spec.parameters.examples"
SEARCH_CONFIG = f"{EXAMPLES}.nearest_neighbor_search_config"
ARTIFACT = "model.artifact_uri"


class Progress(Protocol):
    """How a recipe reports to its job; each call may raise BuildCancelled."""

    def stage(self, stage: int) -> None: ...

    def examples(self, embedded: int, total: int) -> None: ...


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    embed_batch_size: int = 256
    stage_max_bytes: int = 0           # remote text data copied to local disk up to this size
    use_gpu: bool | None = None
    max_examples: int = 0              # examples per model (--max-examples-per-model); 0 = no bound
    max_data_bytes: int = 0            # bytes one pass over the data reads (--max-upload-data-gb); 0 = no bound
    embedder: Embedder | None = None   # who runs the embedding stage; None: here (LocalEmbedder)
    # --allowed-uri-prefix, for the processes a build runs in (they install it: runners/outcome.py)
    allowed_uri_prefixes: tuple[str, ...] = ()
    retrain_added_fraction: float = 0.3   # a compressed index's retrain is due past this share of added examples
    # A local folder for a build's large files (the embeddings, a compressed index's
    # segment), kept until the index is saved; "" keeps them in memory (runners/outcome.py sets it).
    scratch_dir: str = ""

    def scratch(self, name: str) -> str | None:
        """A file of the scratch folder (None without one)."""
        return os.path.join(self.scratch_dir, name) if self.scratch_dir else None


class Recipe:
    def build(self, model: model_pb2.Model, progress: Progress, options: BuildOptions) -> ExampleIndex | None:
        raise NotImplementedError

    def response(self, model: model_pb2.Model, index):
        """The operation's response once published; `index` is the built index's
        IndexSummary (runners/outcome.py), None when the recipe built none."""
        return model_service_pb2.UploadModelResponse(model=model)


def recipe_for(model: model_pb2.Model, max_neighbor_count: int) -> Recipe:
    """The recipe of an upload's model, validated. May fill defaults into `model`."""
    params = model.explanation_spec.parameters
    method = method_of(params)
    if method is None:
        raise InvalidArgument("set examples or an attribution method", field="model.explanation_spec.parameters")
    if model.artifact_uri:
        _check_artifact(allowed_uris.check(model.artifact_uri, ARTIFACT))
        require_tensorflow(ARTIFACT)
    elif method.is_attribution:
        raise InvalidArgument("feature attributions need the SavedModel", field=ARTIFACT)
    if method is Method.EXAMPLES:
        return ExamplesRecipe.validated(params.examples, max_neighbor_count)
    return AttributionRecipe.validated(model, method)


class AttributionRecipe(Recipe):
    """Nothing to build: loading the model validates its signature and metadata."""

    @classmethod
    def validated(cls, model: model_pb2.Model, method: Method) -> "AttributionRecipe":
        """What needs no model is refused now, by UploadModel itself: the parameters' ranges and
        the metadata's own rules (the request's, else the file beside the model)."""
        from ..attributions import metadata, parameters
        spec = model.explanation_spec
        parameters.resolve(spec.parameters)
        if spec.HasField("metadata"):
            metadata.check_metadata(spec.metadata, metadata.DEFAULT_FIELD, method.value, spec.parameters)
        else:
            found = metadata.load_metadata_for_model(model.artifact_uri)
            if found is not None:
                metadata.check_metadata(found, f"{ARTIFACT} ({metadata.METADATA_FILE})", method.value, spec.parameters)
        return cls()

    def build(self, model, progress, options):
        progress.stage(Stage.LOADING_MODEL)
        _metadata_beside_model(model)
        from ..runtime.feature_model import FeatureModel
        FeatureModel.load(model.artifact_uri, model.explanation_spec).close()
        return None


@dataclasses.dataclass(frozen=True)
class ExamplesRecipe(Recipe):
    """Embed every example with the model's latent space (or take its own
    embedding), then index them."""
    search_config: SearchConfig
    source: DataSource

    @classmethod
    def validated(cls, examples, max_neighbor_count: int) -> "ExamplesRecipe":
        if examples.neighbor_count < 0:
            raise InvalidArgument(f"must be >= 0, got {examples.neighbor_count}", field=f"{EXAMPLES}.neighbor_count")
        if examples.neighbor_count > max_neighbor_count:
            raise InvalidArgument(f"must be <= {max_neighbor_count} (--max-neighbor-count), "
                                  f"got {examples.neighbor_count}", field=f"{EXAMPLES}.neighbor_count")
        if not examples.neighbor_count:
            examples.neighbor_count = DEFAULT_NEIGHBOR_COUNT
        config_kind = examples.WhichOneof("config")
        if config_kind == "nearest_neighbor_search_config":
            value = json_format.MessageToDict(examples.nearest_neighbor_search_config)
            config = search_config_from_json(value, examples.neighbor_count, field=SEARCH_CONFIG)
            delta = value.get("contentsDeltaUri") if isinstance(value, dict) else None
            if isinstance(delta, str) and delta:      # never read, but a URI the request names
                allowed_uris.check(delta, f"{SEARCH_CONFIG}.contentsDeltaUri")
        elif config_kind == "presets":
            presets = examples.presets
            config = search_config_from_presets(enum_name(presets.Query, presets.query, f"{EXAMPLES}.presets.query"),
                                                enum_name(presets.Modality, presets.modality,
                                                          f"{EXAMPLES}.presets.modality"), examples.neighbor_count,
                                                field=f"{EXAMPLES}.presets")
        else:
            raise InvalidArgument("set nearest_neighbor_search_config or presets", field=EXAMPLES)
        source = data_source(examples, EXAMPLES)
        if not source.uris:
            raise InvalidArgument("no data set given", field=source.field)
        # A missing file or an unknown format fails now, not in the operation.
        for path in readers.expand_uris(source.uris, source.field, source.default_format):
            readers.require_format(path)
        return cls(config, source)

    def build(self, model, progress, options):
        progress.stage(Stage.LOADING_MODEL)
        _metadata_beside_model(model)
        latent = _latent_model(model, self.search_config.dimensions, f"{SEARCH_CONFIG}.config.dimensions")
        examples = read_and_embed(self.source, latent, model, progress, options)
        progress.stage(Stage.BUILDING_INDEX)
        config = self.search_config
        if config.dimensions is None:
            config = dataclasses.replace(config, dimensions=int(examples.embeddings.shape[1]))
        with attach_fields(EXAMPLES, {DimensionMismatch: f"{SEARCH_CONFIG}.config.dimensions"}):
            return ExampleIndex.build_from(examples.embeddings, examples.attributes, config, use_gpu=options.use_gpu,
                                           segment_path=options.scratch("segment.npy"))


UPDATE_EXAMPLES = "examples"
REMOVE_IDS = "remove_example_ids"
MAX_ID_CHARS = 4096


@dataclasses.dataclass(frozen=True)
class UpdateRecipe(Recipe):
    """UpdateExplanationDataset: the published build `base_build` of `model_id`,
    less the examples `remove_ids`, plus the examples of `source` (embedded as
    the upload's were). Everything it needs is here and in the store, so any
    runner can re-create it from the operation (request + metadata.base_build)."""
    store_url: str
    model_id: str
    base_build: str
    source: DataSource | None
    remove_ids: tuple[str, ...] = ()
    retrain: bool = False

    @classmethod
    def validated(cls, request: model_service_pb2.UpdateExplanationDatasetRequest, published: model_pb2.Model,
                  base_build: str, store_url: str, max_remove_ids: int) -> "UpdateRecipe":
        if method_of(published.explanation_spec.parameters) is not Method.EXAMPLES:
            raise FailedPrecondition(f"{published.name} explains by feature attributions: it has no examples "
                                     "to update", field="model")
        examples = request.examples
        for part in ("nearest_neighbor_search_config", "presets"):
            if examples.HasField(part):
                raise InvalidArgument("the search config is the model's; upload a new model to change it",
                                      field=f"{UPDATE_EXAMPLES}.{part}")
        if examples.neighbor_count:
            raise InvalidArgument("neighbor_count is the model's; leave it unset",
                                  field=f"{UPDATE_EXAMPLES}.neighbor_count")
        source = data_source(examples, UPDATE_EXAMPLES)
        for path in readers.expand_uris(source.uris, source.field, source.default_format) if source.uris else ():
            readers.require_format(path)
        ids = list(request.remove_example_ids)
        if len(ids) > max_remove_ids:
            raise InvalidArgument(f"at most {max_remove_ids} ids per update (--update-max-remove-ids), "
                                  f"got {len(ids)}", field=REMOVE_IDS)
        for i, example_id in enumerate(ids):
            if not example_id or len(example_id) > MAX_ID_CHARS:
                raise InvalidArgument(f"an example id has 1 to {MAX_ID_CHARS} characters, got {len(example_id)}",
                                      field=f"{REMOVE_IDS}[{i}]")
        if not source.uris and not ids and not request.retrain:
            raise InvalidArgument("nothing to update: give examples to add, ids to remove, or retrain",
                                  field=UPDATE_EXAMPLES)
        return cls(store_url, base_build=base_build, model_id=published.name.split("/", 1)[1],
                   source=source if source.uris else None, remove_ids=tuple(ids), retrain=request.retrain)

    def build(self, model, progress, options):
        from ..store.models import ModelStore          # the store's layout, read here as any runner would
        progress.stage(Stage.LOADING_MODEL)
        store = ModelStore.at(self.store_url)
        with tempfile.TemporaryDirectory(prefix="explaind-base-") as scratch:
            base_dir, segments_dir = os.path.join(scratch, "base"), os.path.join(scratch, "segments")
            store.download_build(self.model_id, self.base_build, base_dir)
            saved = IndexMeta.read(base_dir)
            # A compressed index's vectors: a retrain encodes them again, any update measures the recall
            # against them (other kinds keep theirs in the build files). A local store links them.
            if saved.kind.compressed:
                os.makedirs(segments_dir)
                for name in saved.segment_names:
                    store.download_segment(self.model_id, name, os.path.join(segments_dir, f"{name}.npy"))
            # Mapped segments stay readable after the scratch folder goes (the files are only unlinked).
            base = ExampleIndex.load(base_dir, use_gpu=False, segments_folder=segments_dir,
                                     keep_codes=saved.kind.compressed and not self.retrain)
        additions = None
        if self.source is not None:
            _metadata_beside_model(model)
            latent = _latent_model(model, base.dimensions, self.source.field)
            kept = base.live_count - len(set(self.remove_ids))      # unknown ids fail below
            embedded = read_and_embed(self.source, latent, model, progress, options,
                                      first_default_id=base.lineage.next_default_id, held=kept)
            additions = Additions(embedded.embeddings, embedded.ids, embedded.restricts, embedded.tags)
        progress.stage(Stage.BUILDING_INDEX)
        remove = self._removed_positions(base)
        if additions is not None:
            self._check_new_ids(base, additions.ids, set(self.remove_ids))
        with attach_fields(self.source.field if self.source else UPDATE_EXAMPLES,
                           {DimensionMismatch: self.source.field if self.source else UPDATE_EXAMPLES}):
            return base.updated(additions, remove, retrain=self.retrain, use_gpu=False,
                                segment_path=options.scratch("segment.npy"))

    def _removed_positions(self, base: ExampleIndex) -> np.ndarray:
        found = base.positions_of(list(self.remove_ids))
        for i, example_id in enumerate(self.remove_ids):
            if example_id not in found:
                raise InvalidArgument(f"the model has no example {example_id!r}", field=f"{REMOVE_IDS}[{i}]")
        return np.array(sorted(set(found.values())), dtype=np.int64)

    def _check_new_ids(self, base: ExampleIndex, ids: list[str], removed: set[str]) -> None:
        clashes = [i for i in base.positions_of(ids) if i not in removed]
        if clashes:
            raise InvalidArgument(f"example id {sorted(clashes)[0]!r} is already in the model; list it in "
                                  f"{REMOVE_IDS} of the same request to replace it", field=self.source.field)

    def response(self, model, index):
        return update_response(model, *(index.last_update if index is not None else (0, 0)))


def update_response(model: model_pb2.Model, added: int, removed: int):
    """UpdateExplanationDataset's answer for the model an update published."""
    return model_service_pb2.UpdateExplanationDatasetResponse(
        model=model, examples_added=int(added), examples_removed=int(removed),
        retrain_recommended=model.index_info.retrain_recommended)


def _latent_model(model: model_pb2.Model, dimensions: int | None, dimensions_field: str):
    """The SavedModel's latent space (None for index-only models), checked against `dimensions`."""
    if not model.artifact_uri:
        return None
    from ..runtime.saved_model import LatentModel  # TensorFlow loads only when a build needs it
    metadata = model.explanation_spec.metadata
    latent = LatentModel.load(model.artifact_uri, latent_source(metadata))
    if dimensions not in (None, latent.latent_dim):
        raise InvalidArgument(
            f"dimensions is {dimensions} but the latent space "
            f"{latent_source(metadata) or '(the only output)'} has {latent.latent_dim} values",
            field=dimensions_field)
    return latent


def read_and_embed(source: DataSource, latent, model: model_pb2.Model, progress: Progress, options: BuildOptions,
                   first_default_id: int = 0, held: int = 0) -> EmbeddedExamples:
    """Stages READING_EXAMPLES and EMBEDDING: every example of the source, embedded by
    the options' embedder (here, or on Ray). A record without an id gets
    str(first_default_id + its position). `held`: examples the model keeps beside
    these (an update's), counted against --max-examples-per-model."""
    progress.stage(Stage.READING_EXAMPLES)
    paths = readers.expand_uris(source.uris, source.field, source.default_format)
    with tempfile.TemporaryDirectory(prefix="explaind-data-") as scratch, \
            staged_locally(paths, scratch, options.stage_max_bytes) as local_paths:
        with read_budget(options.max_data_bytes, source.field):
            total = readers.count_records(local_paths)
        check_example_count(total, options.max_examples, source.field, held)
        progress.examples(0, total)
        progress.stage(Stage.EMBEDDING)
        embedder = options.embedder or LocalEmbedder(options.embed_batch_size, options.max_examples, held)
        with read_budget(options.max_data_bytes, source.field):
            examples = embedder.embed(local_paths, latent, model, total, source.field, progress, first_default_id,
                                      matrix_path=options.scratch("embeddings.npy"))
        check_example_count(len(examples), options.max_examples, source.field, held)
    return examples


def _metadata_beside_model(model: model_pb2.Model) -> None:
    """As in Vertex AI: without metadata in the request, the file beside the model counts."""
    if model.artifact_uri and not model.explanation_spec.HasField("metadata"):
        from ..attributions.metadata import load_metadata_for_model
        found = load_metadata_for_model(model.artifact_uri)
        if found is not None:
            model.explanation_spec.metadata.CopyFrom(found)


def _check_artifact(uri: str) -> None:
    try:
        fs, path = fsspec.core.url_to_fs(uri)
        ok = fs.isfile(path) and path.endswith(".keras") or fs.exists(f"{path.rstrip('/')}/saved_model.pb")
    except Exception as e:  # noqa: BLE001 - unreachable storage is a bad uri for the caller
        raise InvalidArgument(f"cannot read {uri!r}: {e}", field=ARTIFACT) from e
    if not ok:
        raise InvalidArgument(f"{uri!r} is not a SavedModel folder (no saved_model.pb) nor a .keras file",
                              field=ARTIFACT)
