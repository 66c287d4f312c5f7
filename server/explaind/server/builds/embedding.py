"""The embedding stage: every example of the data set as (vector, id, restricts, crowding tag).

A batch of records is embedded in two steps, so that a distributed runner can
run them in different places: `prepare_batch` (pure numpy: ids, restricts,
given embeddings and the model inputs as tensors; no TensorFlow) and
`finish_batch` (the model run). `LocalEmbedder` runs both here, in data set
order; the Ray runner (runners/ray_embedding.py) prepares in read tasks and
finishes in actors that load the model once.
"""
from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np

from ..errors import InvalidArgument, ResourceExhausted
from ..index.attributes import AttributesBuilder, ExampleAttributes
from ..index.restricts import Namespace, parse_restricts
from ..runtime.instances import Instance, InputSpec, ShapeMismatch, batch_inputs
from . import readers
from .matrix import EmbeddingMatrix

ARTIFACT = "model.artifact_uri"


@dataclasses.dataclass
class EmbeddedExamples:
    """The embeddings (in memory, or a memory-mapped file in the build's
    scratch folder) and each example's id, restricts and tag, held compactly."""
    embeddings: np.ndarray
    attributes: ExampleAttributes

    @property
    def ids(self) -> list[str]:
        return list(self.attributes.ids)

    @property
    def restricts(self) -> list[list[Namespace]]:
        return self.attributes.restricts()

    @property
    def tags(self) -> list[str | None]:
        return self.attributes.tags()

    def __len__(self) -> int:
        return len(self.attributes)


class Embedder(Protocol):
    """Runs the embedding stage of a build. `latent` is the loaded model (None
    for index-only models), `model` the upload's Model (its artifact_uri and
    latent space source, for embedders that load the model elsewhere). A record
    without an id gets str(first_default_id + its position in the data set).
    `matrix_path`: a file for the embeddings (None: memory)."""

    def embed(self, paths: list[str], latent, model, total: int, field: str, progress,
              first_default_id: int = 0, matrix_path: str | None = None) -> EmbeddedExamples: ...


@dataclasses.dataclass
class PreparedBatch:
    """Records [position, position + size) of the data set, ready for the model."""
    position: int
    ids: list[str]
    restricts: list[list[Namespace]]
    tags: list[str | None]
    vectors: list[np.ndarray | None]             # given embeddings; None where the model must run
    groups: list[tuple[dict[str, np.ndarray], list[int]]]   # (model inputs, the rows they are for)

    @property
    def size(self) -> int:
        return len(self.ids)


def prepare_batch(batch: list[Instance], input_specs: dict[str, InputSpec] | None, position: int,
                  field: str, first_default_id: int = 0) -> PreparedBatch:
    needs_model = [i for i, r in enumerate(batch) if r.embedding is None]
    groups = []
    if needs_model:
        if input_specs is None:
            raise InvalidArgument(
                f"example {position + needs_model[0]} has model inputs but the model has no "
                "artifact_uri; give every example an embedding or upload the SavedModel", field=ARTIFACT)
        groups = _same_shape_groups([batch[i] for i in needs_model], needs_model, input_specs, position)
    return PreparedBatch(
        position=position,
        ids=[r.id if r.id is not None else str(first_default_id + position + offset)
             for offset, r in enumerate(batch)],
        restricts=[parse_restricts(r.restricts, field=f"examples[{position + offset}].restricts")
                   for offset, r in enumerate(batch)],
        tags=[r.crowding_tag for r in batch],
        vectors=[r.embedding for r in batch],
        groups=groups)


def finish_batch(prepared: PreparedBatch, latent, field: str) -> np.ndarray:
    """The batch's (size, d) float32 embeddings: given ones, and the model's for the rest."""
    vectors = list(prepared.vectors)
    for inputs, members in prepared.groups:
        out = latent.embed(inputs)
        for j, i in enumerate(members):
            vectors[i] = out[j]
    return _stack(vectors, prepared.position, field)


def check_example_count(count: int, max_examples: int, field: str, held: int = 0) -> None:
    """`count` examples of a data set, beside the `held` ones the model keeps (an update's)."""
    if not max_examples or held + count <= max_examples:
        return
    if held:
        raise ResourceExhausted(f"the model keeps {held} examples and the data set adds {count}: more than "
                                f"{max_examples}, the most one model may hold (--max-examples-per-model)",
                                field=field)
    raise ResourceExhausted(f"the data set has more than {max_examples} examples, the most one model may "
                            "hold (--max-examples-per-model)", field=field)


class LocalEmbedder:
    """The embedding stage in this process, batch after batch."""

    def __init__(self, batch_size: int, max_examples: int = 0, held: int = 0):
        self.batch_size = batch_size
        self.max_examples = max_examples      # --max-examples-per-model; 0: no bound
        self.held = held                      # examples the model keeps beside these (an update's)

    def embed(self, paths, latent, model, total, field, progress, first_default_id=0,
              matrix_path=None) -> EmbeddedExamples:
        input_specs = latent.input_specs if latent is not None else None
        input_names = latent.input_names if latent is not None else None
        matrix = EmbeddingMatrix(total, field, matrix_path)
        examples = AttributesBuilder()
        position = 0
        for batch in readers.iter_batches(readers.iter_records(paths, input_names, field), self.batch_size):
            # the count may have been short
            check_example_count(position + len(batch), self.max_examples, field, self.held)
            prepared = prepare_batch(batch, input_specs, position, field, first_default_id)
            matrix.append(finish_batch(prepared, latent, field))
            examples.add(prepared.ids, prepared.restricts, prepared.tags)
            position += prepared.size
            progress.examples(position, max(total, position))
        if position == 0:
            raise InvalidArgument("the data set has no examples", field=field)
        return EmbeddedExamples(matrix.result(), examples.result(field))


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
