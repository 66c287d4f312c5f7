"""Colour maps named in the visualization config, as functions of intensity in [0, 1] -> RGB floats."""
from __future__ import annotations

import numpy as np

# Viridis sampled at 9 evenly spaced points; linear interpolation in between is
# visually indistinguishable at heatmap resolution.
_VIRIDIS = np.array([
    [68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
    [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37],
], dtype=np.float64) / 255.0

GREEN = np.array([0.0, 1.0, 0.0])
PINK = np.array([1.0, 0.0, 1.0])
RED = np.array([1.0, 0.0, 0.0])


def viridis(intensity: np.ndarray) -> np.ndarray:
    position = np.clip(intensity, 0, 1) * (len(_VIRIDIS) - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, len(_VIRIDIS) - 1)
    fraction = (position - low)[..., None]
    return _VIRIDIS[low] * (1 - fraction) + _VIRIDIS[high] * fraction


def signed_colors(intensity: np.ndarray, sign: np.ndarray, color_map: str) -> np.ndarray:
    """RGB (H, W, 3) in [0, 1] for a magnitude in [0, 1] and the attribution's sign."""
    intensity = np.clip(intensity, 0, 1)[..., None]
    positive = (sign >= 0)[..., None]
    if color_map == "VIRIDIS":
        return viridis(intensity[..., 0])
    if color_map == "RED":
        return intensity * RED
    if color_map == "GREEN":
        return intensity * GREEN
    if color_map == "RED_GREEN":
        return intensity * np.where(positive, GREEN, RED)
    if color_map == "PINK_WHITE_GREEN":
        # White at zero, saturating to green (positive) or pink (negative).
        target = np.where(positive, GREEN, PINK)
        return (1 - intensity) * 1.0 + intensity * target
    return intensity * np.where(positive, GREEN, PINK)  # PINK_GREEN, the default
