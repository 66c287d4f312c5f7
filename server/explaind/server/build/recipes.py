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
import numpy as np
from google.protobuf import json_format

from explaind.v1 import model_pb2, model_service_pb2

from ..errors import DimensionMismatch, InvalidArgument, attach_fields
from ..index.config import DEFAULT_NEIGHBOR_COUNT, SearchConfig, search_config_from_json, \
    search_config_from_presets
from ..index.example_index import ExampleIndex
from ..index.restricts import parse_restricts
from ..methods import Method, method_of
from ..runtime.instances import ShapeMismatch, batch_inputs
from . import readers
from .matrix import EmbeddingMatrix
from .readers.source import DataSource, data_source
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
        _check_artifact(model.artifact_uri)
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
        elif config_kind == "presets":
            presets = examples.presets
            config = search_config_from_presets(presets.Query.Name(presets.query),
                                                presets.Modality.Name(presets.modality), examples.neighbor_count,
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
            total = readers.count_records(local_paths)
            progress.examples(0, total)
            progress.stage(Stage.EMBEDDING)
            examples = embed_examples(local_paths, latent, total, self.source.field, options.embed_batch_size,
                                      progress)

        progress.stage(Stage.BUILDING_INDEX)
        config = self.search_config
        if config.dimensions is None:
            config = dataclasses.replace(config, dimensions=int(examples.embeddings.shape[1]))
        with attach_fields(EXAMPLES, {DimensionMismatch: f"{SEARCH_CONFIG}.config.dimensions"}):
            return ExampleIndex.build(examples.embeddings, examples.ids, examples.restricts, examples.tags, config,
                                      use_gpu=options.use_gpu)


@dataclasses.dataclass
class EmbeddedExamples:
    embeddings: np.ndarray
    ids: list[str]
    restricts: list
    tags: list[str | None]


def embed_examples(paths, latent, total: int, field: str, batch_size: int, progress: Progress) -> EmbeddedExamples:
    """Every example of the data set, embedded, in data set order."""
    input_names = latent.input_names if latent is not None else None
    matrix = EmbeddingMatrix(total, field)
    ids, restricts, tags = [], [], []
    position = 0
    for batch in readers.iter_batches(readers.iter_records(paths, input_names, field), batch_size):
        vectors: list[np.ndarray | None] = [r.embedding for r in batch]
        needs_model = [i for i, r in enumerate(batch) if r.embedding is None]
        if needs_model:
            if latent is None:
                raise InvalidArgument(
                    f"example {position + needs_model[0]} has model inputs but the model has no "
                    "artifact_uri; give every example an embedding or upload the SavedModel", field=ARTIFACT)
            for inputs, members in _same_shape_groups([batch[i] for i in needs_model], needs_model,
                                                      latent.input_specs, position):
                out = latent.embed(inputs)
                for j, i in enumerate(members):
                    vectors[i] = out[j]
        for offset, r in enumerate(batch):
            ids.append(r.id if r.id is not None else str(position + offset))
            restricts.append(parse_restricts(r.restricts, field=f"examples[{position + offset}].restricts"))
            tags.append(r.crowding_tag)
        matrix.append(_stack(vectors, position, field))
        position += len(batch)
        progress.examples(position, max(total, position))
    if position == 0:
        raise InvalidArgument("the data set has no examples", field=field)
    return EmbeddedExamples(matrix.result(), ids, restricts, tags)


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


def _same_shape_groups(records, members: list[int], input_specs, position: int):
    """(stacked inputs, member indices) per shape. One group in the usual case; a
    signature with a free dimension (lengths, image sizes) may need several."""
    try:
        return [(batch_inputs(records, input_specs, field_prefix=f"examples[{position}..]"), members)]
    except ShapeMismatch:
        pass
    groups: dict[tuple, tuple[list, list]] = {}
    for record, member in zip(records, members):
        one = batch_inputs([record], input_specs, field_prefix=f"examples[{position + member}]")
        shapes = tuple((name, value.shape) for name, value in one.items())
        rows, indices = groups.setdefault(shapes, ([], []))
        rows.append(one)
        indices.append(member)
    return [({name: np.concatenate([r[name] for r in rows]) for name in rows[0]}, indices)
            for rows, indices in groups.values()]


def _stack(vectors: list[np.ndarray], position: int, field: str) -> np.ndarray:
    sizes = {np.asarray(v).reshape(-1).shape[0] for v in vectors}
    if len(sizes) != 1:
        raise InvalidArgument(f"examples {position}..{position + len(vectors) - 1} have embeddings of "
                              f"different sizes {sorted(sizes)}", field=field)
    return np.stack([np.asarray(v, dtype=np.float32).reshape(-1) for v in vectors])
