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
import tempfile
from typing import Protocol

import fsspec
from google.protobuf import json_format

from explaind.v1 import model_pb2, model_service_pb2

from ..errors import DimensionMismatch, InvalidArgument, ResourceExhausted, attach_fields, enum_name
from ..index.config import DEFAULT_NEIGHBOR_COUNT, SearchConfig, search_config_from_json, \
    search_config_from_presets
from ..index.example_index import ExampleIndex
from ..methods import Method, method_of
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


class Recipe:
    def build(self, model: model_pb2.Model, progress: Progress, options: BuildOptions) -> ExampleIndex | None:
        raise NotImplementedError


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
    return AttributionRecipe()


class AttributionRecipe(Recipe):
    """Nothing to build: loading the model validates its signature and metadata."""

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
        latent = None
        if model.artifact_uri:
            from ..runtime.saved_model import LatentModel  # TensorFlow loads only when a build needs it
            metadata = model.explanation_spec.metadata
            latent = LatentModel.load(model.artifact_uri, metadata.latent_space_source)
            if self.search_config.dimensions not in (None, latent.latent_dim):
                raise InvalidArgument(
                    f"dimensions is {self.search_config.dimensions} but the latent space "
                    f"{metadata.latent_space_source or '(the only output)'} has {latent.latent_dim} values",
                    field=f"{SEARCH_CONFIG}.config.dimensions")

        progress.stage(Stage.READING_EXAMPLES)
        paths = readers.expand_uris(self.source.uris, self.source.field, self.source.default_format)
        with tempfile.TemporaryDirectory(prefix="explaind-data-") as scratch, \
                staged_locally(paths, scratch, options.stage_max_bytes) as local_paths:
            with read_budget(options.max_data_bytes, self.source.field):
                total = readers.count_records(local_paths)
            check_example_count(total, options.max_examples, self.source.field)
            progress.examples(0, total)
            progress.stage(Stage.EMBEDDING)
            embedder = options.embedder or LocalEmbedder(options.embed_batch_size, options.max_examples)
            with read_budget(options.max_data_bytes, self.source.field):
                examples = embedder.embed(local_paths, latent, model, total, self.source.field, progress)
            check_example_count(len(examples.ids), options.max_examples, self.source.field)

        progress.stage(Stage.BUILDING_INDEX)
        config = self.search_config
        if config.dimensions is None:
            config = dataclasses.replace(config, dimensions=int(examples.embeddings.shape[1]))
        with attach_fields(EXAMPLES, {DimensionMismatch: f"{SEARCH_CONFIG}.config.dimensions"}):
            return ExampleIndex.build(examples.embeddings, examples.ids, examples.restricts, examples.tags, config,
                                      use_gpu=options.use_gpu)


def embed_examples(paths, latent, total: int, field: str, batch_size: int, progress: Progress) -> EmbeddedExamples:
    """Every example of the data set, embedded here, in data set order."""
    return LocalEmbedder(batch_size).embed(paths, latent, None, total, field, progress)


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
