"""A batch job's array path: a batch of rows answered as arrays across the batch
(the model's outputs, attributions, the index's positions and distances) and
each row's line written from them, without the per-row messages and objects an
Explain answer is built of (InstanceExplanation, Attribution, Neighbor, Value).

It answers the kinds whose every row shares its shapes and its layout:
integrated gradients (and SmoothGrad) of inputs perturbed as they are
(FeatureExplainer.arrays_apply), neighbors of model inputs (restricts and
crowding included), and predictions only. Anything else (Shapley, XRAI, blur,
encoded or picture inputs, EMBEDDINGS rows, returned embeddings, an index-only
model, outputs that are not numbers) takes the data plane's Explain, as does a
batch whose numbers are not all finite: JSON has no such number, and the
messages word it.

Rows are read by the data plane's own functions (parse_instances,
batch_inputs), so a row they refuse fails with the error an Explain call gives
it. A failure past reading is not worded here: the caller asks the data plane
again, which says what Explain says.

Each line is the JSON the Explain path writes (explainer.py: the REST Explain
answer's Explanation through MessageToDict): proto3 leaves out zero numbers
and empty strings; struct keys come in the order that path gives them.
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import grpc
import numpy as np

from explaind.client.values import to_python, to_value
from explaind.v1 import explanation_pb2
from explaind.vertex.v1 import prediction_service_pb2 as vertex

from ..errors import attach_fields
from ..runtime.instances import batch_inputs
from ..serving.requests import Limits, examples_query, instance_restricts, parse_instances
from ..serving.servables import AttributionServable, ExampleServable, Servable
from .instances import Prepared
from .json_lines import dumps_line
from .rows import RowError
from .split_search import SplitSearch

Line = Callable[[Prepared], "bytes | RowError"]


class ArrayPath:
    """The array path of one job: its servable (pinned for the job) and override."""

    def __init__(self, servable: Servable, override: explanation_pb2.ExplanationSpecOverride, limits: Limits,
                 explained: bool, cores: int = 1):
        self.servable = servable
        self.override = override
        self.limits = limits
        self.explained = explained
        # The job's neighbor query (its override's), the same for every batch.
        self.query = examples_query(override, servable.default_neighbor_count, limits) \
            if explained and isinstance(servable, ExampleServable) else None
        self.search = SplitSearch(servable.index, cores) if self.query is not None else None

    @classmethod
    def of(cls, servable: Servable | None, override, limits: Limits, explained: bool,
           cores: int = 1) -> "ArrayPath | None":
        """The job's array path, or None where its rows take the data plane's Explain (module doc).
        `cores`: the job's, which a batch's neighbor search is sliced over (split_search.py)."""
        if servable is None or not applies(servable, override, limits, explained):
            return None
        return cls(servable, override, limits, explained, cores)

    def close(self) -> None:
        if self.search is not None:
            self.search.close()

    def answer_instances(self, instances: list) -> list[Line] | None:
        """answer() of rows read as they are, where bulk_inputs reads the whole batch (every row
        an object of the model's numeric inputs); None: ask answer() (or the data plane)."""
        inputs = bulk_inputs(instances, self.servable.input_specs())
        if inputs is None:
            return None
        query = self.query
        # The rows carry no restricts of their own: each has the job's.
        restricts = [list(query.restricts) for _ in instances] if query is not None else None
        try:
            return self._lines(inputs, query, restricts)
        except Exception:  # noqa: BLE001 - as answer()
            return None

    def answer(self, values: list) -> list[Line] | None:
        """Per value, the function writing its row's line; None: ask the data plane. Raises what
        the data plane raises for a row it cannot read (its field names the row)."""
        servable = self.servable
        parsed = parse_instances(values, servable.input_names(), False, self.limits)
        with attach_fields("instances"):
            inputs = batch_inputs(parsed, servable.input_specs())
            query = self.query
            restricts = instance_restricts(parsed, query, self.limits) if query is not None else None
        try:
            return self._lines(inputs, query, restricts)
        except Exception:  # noqa: BLE001 - the data plane's Explain words every failure past reading
            return None

    def _lines(self, inputs, query, restricts) -> list[Line] | None:
        servable = self.servable
        if not self.explained:
            predictions = prediction_lists(servable.predict(inputs))
            return None if predictions is None else [_writer(p, _NONE) for p in predictions]
        if isinstance(servable, ExampleServable):
            vectors, outputs = servable.embed_and_predict(inputs)
            predictions = prediction_lists(outputs)
            pos, dist = self.search.search(np.asarray(vectors, np.float32), query.neighbor_count,
                                           restricts if any(restricts) else None, query.crowding_count)
            explanations = neighbor_dicts(servable.index.contents.ids.many, pos, dist)
        else:
            arrays = servable.features.explain_arrays(inputs, self.override)
            if arrays is None:
                return None
            predictions = prediction_lists(arrays.predictions)
            explanations = attribution_dicts(arrays)
        if predictions is None or explanations is None:
            return None
        return [_writer(p, e) for p, e in zip(predictions, explanations)]


_NUMBERS = frozenset({float, int})        # what json.loads makes of numbers (bools are not ints here)
_EXACT_INT = 2**53
_FLOATS = frozenset({"float16", "float32", "float64"})


def bulk_inputs(instances: list, input_specs: dict) -> dict[str, np.ndarray] | None:
    """The model inputs of a batch whose every row is an object of exactly the model's inputs, each
    a floating input of one axis or none, given as finite numbers (a list of them, or one): stacked
    as parse_instances and batch_inputs stack them (the same float64 values cast to the input's
    dtype), without an Instance per row. None for any other batch: those functions read it, and
    word its rows' errors."""
    names = set(input_specs)
    for instance in instances:
        if type(instance) is not dict or instance.keys() != names:
            return None
    out = {}
    for name, spec in input_specs.items():
        if spec.dtype not in _FLOATS or len(spec.shape) not in (1, 2):
            return None
        column = [instance[name] for instance in instances]
        if len(spec.shape) == 2:
            if not all(type(value) is list for value in column):
                return None
            kinds = set().union(*(map(type, value) for value in column))
        else:
            kinds = set(map(type, column))
        if not kinds <= _NUMBERS:
            return None
        try:
            array = np.array(column, dtype=np.float64)
        except ValueError:          # rows of different lengths
            return None
        if array.ndim != len(spec.shape) or any(e is not None and e != s for s, e in zip(array.shape[1:], spec.shape[1:])):
            return None             # a shape the readers refuse, or reshape (a flat list of a fixed shape)
        if not np.isfinite(array).all() or int in kinds and not _exact_ints(column, len(spec.shape) == 2):
            return None
        out[name] = array.astype(spec.dtype)
    return out


def _exact_ints(column: list, lists: bool) -> bool:
    """Whether every int of the column is one a float holds exactly (as decoded.py asks)."""
    values = (v for value in column for v in value) if lists else iter(column)
    return all(abs(v) <= _EXACT_INT for v in values if type(v) is int)


def applies(servable: Servable, override, limits: Limits, explained: bool) -> bool:
    try:
        servable.check_override(override)
    except Exception:  # noqa: BLE001 - the data plane words the refusal, row by row
        return False
    if isinstance(servable, AttributionServable):
        return not explained or servable.features.explainer.arrays_apply(override)
    if isinstance(servable, ExampleServable):
        if servable.latent is None:
            return False
        if not explained:
            return True
        try:
            query = examples_query(override, servable.default_neighbor_count, limits)
        except Exception:  # noqa: BLE001 - as above
            return False
        return not (query.embeddings_format or query.return_embeddings)
    return False


_NONE = object()


def _writer(prediction, explanation) -> Line:
    return functools.partial(_line, prediction, explanation)


def _line(prediction, explanation, row: Prepared) -> bytes | RowError:
    line = {row.shown_as: row.shown, "prediction": prediction}
    if explanation is not _NONE:
        line["explanation"] = explanation
    try:
        return dumps_line(line)
    except ValueError as e:        # as explainer._line (the numbers were checked finite: never expected)
        return RowError(grpc.StatusCode.INTERNAL, f"the answer cannot be written as JSON: {e}")


def prediction_lists(outputs: dict[str, np.ndarray]) -> list | None:
    """Per row, its prediction as to_python(prediction_value(row)) reads: the bare value of a
    single output, else a dict in that path's key order; None for outputs other than finite
    numbers and bools."""
    columns = {}
    for name, value in outputs.items():
        value = np.asarray(value)
        if value.dtype.kind == "b":
            columns[name] = value.tolist()
        elif value.dtype.kind in "iuf":
            value = value.astype(np.float64)
            if not np.isfinite(value).all():
                return None
            columns[name] = value.tolist()
        else:
            return None
    if len(columns) == 1:
        return next(iter(columns.values()))
    order = struct_order(tuple(columns))
    return [{name: columns[name][i] for name in order} for i in range(len(columns[order[0]]))] if order else None


@functools.lru_cache(maxsize=64)
def struct_order(keys: tuple[str, ...]) -> tuple[str, ...]:
    """The order to_python reads a Struct of `keys` back in, set in this order."""
    return tuple(to_python(to_value({key: 0.0 for key in keys})))


@functools.lru_cache(maxsize=64)
def feature_order(keys: tuple[str, ...]) -> tuple[str, ...]:
    """The order the Explain path's line shows an Attribution's feature keys set in this order:
    explaind's message, copied into Vertex's (write_vertex_explanation), then read."""
    ours = explanation_pb2.Attribution()
    for key in keys:
        ours.feature_attributions.struct_value.fields[key].number_value = 1.0
    theirs = vertex.Attribution()
    theirs.MergeFromString(ours.SerializeToString())
    return tuple(to_python(theirs.feature_attributions))


def _present(x: float) -> bool:
    """Whether proto3 keeps a double: any but +0.0 (-0.0's bits are not zero)."""
    return x != 0.0 or math.copysign(1.0, x) < 0


def attribution_dicts(arrays) -> list[dict] | None:
    """Per row, {"attributions": [...]} as the Explain path's line shows its Attributions
    (Vertex's fields 1 to 7, in field order); None when a number is not finite."""
    if not (np.isfinite(arrays.instance_values).all() and np.isfinite(arrays.baseline_values).all()
            and all(np.isfinite(v).all() for v in arrays.features.values())):
        return None
    order = feature_order(tuple(arrays.features))
    features = {key: arrays.features[key].tolist() for key in order}
    instance_values = arrays.instance_values.tolist()
    baseline_values = arrays.baseline_values.tolist()
    errors = arrays.approximation_error.tolist()
    flat = arrays.output_index.tolist()
    index_of = {i: [int(p) for p in np.unravel_index(i, arrays.output_shape)] for i in set(np.unique(arrays.output_index).tolist())}
    out = []
    for row in range(len(flat)):
        attributions = []
        for k, index in enumerate(flat[row]):
            attribution = {}
            if _present(baseline_values[row][k]):
                attribution["baselineOutputValue"] = baseline_values[row][k]
            if _present(instance_values[row][k]):
                attribution["instanceOutputValue"] = instance_values[row][k]
            attribution["featureAttributions"] = {key: features[key][row][k] for key in order}
            attribution["outputIndex"] = index_of[index]
            name = arrays.display_names[index] if index < len(arrays.display_names) else ""
            if name:
                attribution["outputDisplayName"] = name
            if _present(errors[row][k]):
                attribution["approximationError"] = errors[row][k]
            if arrays.output_name:
                attribution["outputName"] = arrays.output_name
            attributions.append(attribution)
        out.append({"attributions": attributions} if attributions else {})
    return out


def neighbor_dicts(ids_of, pos: np.ndarray, dist: np.ndarray) -> list[dict] | None:
    """Per row, {"neighbors": [...]} as the Explain path's line shows Vertex's Neighbors
    (its found ones, nearest first); None when a found distance is not finite."""
    found = pos >= 0
    if not np.isfinite(dist[found]).all():
        return None
    counts = found.sum(axis=1).tolist()
    distances = dist.astype(np.float64).tolist()
    # Each example's id read once a batch (rows share neighbors), then looked up by position.
    unique = np.unique(pos[found])
    ids = np.empty(len(unique) + 1, dtype=object)
    ids[:-1] = ids_of(unique.tolist())
    named = ids[np.searchsorted(unique, pos)].tolist()
    out = []
    for row, n in enumerate(counts):
        neighbors = []
        for neighbor_id, distance in zip(named[row][:n], distances[row][:n]):
            neighbor = {}
            if neighbor_id:
                neighbor["neighborId"] = neighbor_id
            if _present(distance):
                neighbor["neighborDistance"] = distance
            neighbors.append(neighbor)
        out.append({"neighbors": neighbors} if neighbors else {})
    return out
