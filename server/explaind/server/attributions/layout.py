"""From attributions over the tensors a method perturbs to the features Vertex answers with.

Every rule is a sum of elements into a slot, so one scatter does them all and
the total (completeness) is kept:
- on an encoded tensor, the last (embedding) axis is summed back to the input's
  positions (a token's, a category's or a bag index's embedding), or, when the
  rest does not match the input's positions (a pooled embedding), and always for
  COMBINED_EMBEDDING, everything into one number;
- BAG_OF_FEATURES, BAG_OF_FEATURES_SPARSE and INDICATOR inputs answer one
  number per name of index_feature_mapping, keyed by the name; a sparse input's
  values go to the name of their index (the last column of its indices tensor);
- inputs sharing a group_name answer one number keyed by the group;
- any other input answers an array shaped like itself, keyed by its name.

Sampled Shapley's players come from the same layout: a group or a combined
embedding input switches as one player, any other element alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidArgument
from .explained_inputs import ExplainedInput


@dataclass(frozen=True)
class FeatureLayout:
    spaces: tuple[str, ...]          # the perturbed tensors, in order; flattened one after the other
    sizes: tuple[int, ...]           # elements of each
    slots: np.ndarray                # (E,) the feature slot each element sums into
    players: np.ndarray              # (E,) the Shapley player each element belongs to (0..players-1)
    keys: tuple[tuple[str, tuple, int], ...]   # (feature key, shape, first slot)
    slot_count: int
    player_count: int
    player_slots: np.ndarray         # (players,) the slot of each player (every element of a player shares it)

    def features(self, flat: np.ndarray) -> np.ndarray:
        """(..., E) element values -> (..., slot_count) feature values."""
        flat = np.asarray(flat, np.float64)
        out = np.zeros(flat.shape[:-1] + (self.slot_count,))
        # Rows (paths) ride along: slots index the first axis of the transposed views.
        np.add.at(out.reshape(-1, self.slot_count).T, self.slots, flat.reshape(-1, flat.shape[-1]).T)
        return out

    def player_features(self, per_player: np.ndarray) -> np.ndarray:
        """(..., players) player values -> (..., slot_count) feature values."""
        per_player = np.asarray(per_player, np.float64)
        out = np.zeros(per_player.shape[:-1] + (self.slot_count,))
        np.add.at(out.reshape(-1, self.slot_count).T, self.player_slots,
                  per_player.reshape(-1, per_player.shape[-1]).T)
        return out

    def flatten(self, values: dict) -> np.ndarray:
        """Per-space arrays -> one (E,) vector in layout order."""
        return np.concatenate([np.asarray(values[s], np.float64).reshape(-1) for s in self.spaces])

    def as_dict(self, slots: np.ndarray) -> dict[str, np.ndarray]:
        """(slot_count,) -> feature key -> value (a 0-d array for one number)."""
        return {key: slots[first:first + _size(shape)].reshape(shape) for key, shape, first in self.keys}


def _size(shape) -> int:
    return math.prod(shape)       # np.prod costs 20x more on a short tuple, once per instance


def build_layout(inputs: list[ExplainedInput], values: dict[str, np.ndarray], gradients: bool,
                 instance_field: str = "instances") -> FeatureLayout:
    """The layout of one instance: `values` holds its space tensors and sparse indices
    (no batch axis)."""
    keys: dict[str, tuple[tuple, int]] = {}
    player_of: dict[str, int] = {}
    slots, players, spaces, sizes = [], [], [], []
    next_slot = next_player = 0

    def slot(key: str, shape: tuple) -> int:
        nonlocal next_slot
        if key not in keys:
            keys[key] = (shape, next_slot)
            next_slot += _size(shape)
        return keys[key][1]

    for explained in inputs:
        space = explained.space(gradients)
        shape = np.shape(values[space])
        size = _size(shape)
        # Each element's position in the input-level array (after summing the embedding axis).
        if explained.reduces(gradients):
            level_shape, position = _embedding_positions(explained, shape, np.shape(values[explained.tensor]))
        else:
            level_shape, position = shape, np.arange(size)
        if explained.group:
            base = slot(explained.group, ())
            element_slots = np.full(size, base)
        elif explained.encoding == "COMBINED_EMBEDDING":    # one number, whichever tensor was perturbed
            element_slots = np.full(size, slot(explained.name, ()))
        elif explained.is_bag:
            named = {name: slot(name, ()) for name in explained.mapping}    # every name answers, 0 when absent
            names = _bag_names(explained, level_shape, values, instance_field)
            element_slots = np.array([named[name] for name in names], np.int64)[position] if size else \
                np.zeros(0, np.int64)
        else:
            element_slots = slot(explained.name, level_shape) + position
        # Players: a group, or a combined embedding input, switches as one.
        if explained.group or explained.encoding == "COMBINED_EMBEDDING":
            owner = explained.group or f"\0{explained.name}"
            if owner not in player_of:
                player_of[owner] = next_player
                next_player += 1
            element_players = np.full(size, player_of[owner])
        else:
            element_players = next_player + np.arange(size)
            next_player += size
        slots.append(element_slots)
        players.append(element_players)
        spaces.append(space)
        sizes.append(size)
    slots = np.concatenate(slots).astype(np.int64) if slots else np.zeros(0, np.int64)
    players = np.concatenate(players).astype(np.int64) if players else np.zeros(0, np.int64)
    player_slots = np.zeros(next_player, np.int64)
    player_slots[players] = slots
    return FeatureLayout(tuple(spaces), tuple(sizes), slots, players,
                         tuple((k, shape, first) for k, (shape, first) in keys.items()), next_slot, next_player,
                         player_slots)


def _embedding_positions(explained: ExplainedInput, encoded_shape: tuple, input_shape: tuple
                         ) -> tuple[tuple, np.ndarray]:
    """(input-level shape, position of each encoded element): the last axis is the embedding's.
    When what remains matches the input's positions (a token's or a category's embedding),
    each input position gets its embedding's sum; else (a combined embedding, a pooled one)
    the input is one feature."""
    size = _size(encoded_shape)
    if explained.encoding == "COMBINED_EMBEDDING" or not encoded_shape:
        return (), np.zeros(size, np.int64)
    positions = np.arange(size) // encoded_shape[-1]
    if _size(encoded_shape[:-1]) == _size(input_shape) and explained.indices is None:
        return tuple(input_shape), positions
    if explained.indices is not None or explained.is_bag:
        return tuple(encoded_shape[:-1]), positions
    return (), np.zeros(size, np.int64)


def _bag_names(explained: ExplainedInput, level_shape: tuple, values, field: str) -> list[str]:
    """The mapping name of each position of a bag input."""
    mapping = explained.mapping
    count = _size(level_shape)
    if explained.indices is None:
        if count != len(mapping):
            raise InvalidArgument(f"input {explained.name!r} has {count} values, its index_feature_mapping "
                                  f"{len(mapping)} names", field=field)
        return list(mapping)
    if explained.dense_shape is not None:
        dense = np.asarray(values[explained.dense_shape]).reshape(-1)
        if not dense.size or int(dense[-1]) != len(mapping):
            raise InvalidArgument(f"the dense shape of {explained.name!r} is {dense.tolist()}; its last size must be "
                                  f"{len(mapping)}, the length of its index_feature_mapping", field=field)
    indices = np.asarray(values[explained.indices])
    column = indices.reshape(-1) if indices.ndim <= 1 else indices.reshape(len(indices), -1)[:, -1]
    if len(column) != count:
        raise InvalidArgument(f"input {explained.name!r} has {count} values but {len(column)} indices", field=field)
    if column.size and (not np.issubdtype(column.dtype, np.integer) or column.min() < 0 or column.max() >= len(mapping)):
        raise InvalidArgument(f"the indices of {explained.name!r} must be whole numbers in [0, {len(mapping)}) "
                              "(its index_feature_mapping)", field=field)
    return [mapping[int(i)] for i in column]
