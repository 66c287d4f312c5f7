"""Attribution heatmaps for image inputs, per the metadata's visualization config.

Steps: reduce channels to one map; keep the polarity asked for; clip to the
[lower, upper] percentiles of the magnitudes and scale to [0, 1]; draw pixels
or outlines of the salient area; colour; overlay on the image; PNG (Attribution.images)
or base64 JPEG (Vertex's {"b64_jpeg": ...} in feature_attributions).
Defaults follow Vertex: OUTLINES + PINK_GREEN for IG, PIXELS + VIRIDIS for XRAI,
polarity POSITIVE, clip 99.9 / 62, overlay NONE.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np

from explaind.v1 import explanation_pb2

from .blur import gaussian_blur
from .colormaps import signed_colors
from .jpeg import encode_jpeg
from .png import encode_png

Visualization = explanation_pb2.ExplanationMetadata.InputMetadata.Visualization


@dataclass(frozen=True)
class VisualizationSettings:
    type: str = "OUTLINES"
    polarity: str = "POSITIVE"
    color_map: str = "PINK_GREEN"
    clip_upper: float = 99.9
    clip_lower: float = 62.0
    overlay: str = "NONE"


def settings_for(config: "Visualization | None", method: str) -> VisualizationSettings:
    """Effective settings: the config's set fields over the method's defaults."""
    xrai = method == "xrai"
    defaults = VisualizationSettings(type="PIXELS" if xrai else "OUTLINES", color_map="VIRIDIS" if xrai else "PINK_GREEN")
    if config is None:
        return defaults
    return VisualizationSettings(
        type=Visualization.Type.Name(config.type) if config.type else defaults.type,
        polarity=Visualization.Polarity.Name(config.polarity) if config.polarity else defaults.polarity,
        color_map=Visualization.ColorMap.Name(config.color_map) if config.color_map else defaults.color_map,
        clip_upper=config.clip_percent_upperbound or defaults.clip_upper,
        clip_lower=config.clip_percent_lowerbound or defaults.clip_lower,
        overlay=Visualization.OverlayType.Name(config.overlay_type) if config.overlay_type else defaults.overlay,
    )


def normalized_magnitude(attributions: np.ndarray, settings: VisualizationSettings) -> tuple[np.ndarray, np.ndarray]:
    """(intensity in [0, 1], sign) of the (H, W) map after polarity and percentile clipping."""
    values = np.asarray(attributions, np.float64)
    if settings.polarity == "POSITIVE":
        magnitude = np.maximum(values, 0)
    elif settings.polarity == "NEGATIVE":
        magnitude = np.maximum(-values, 0)
    else:
        magnitude = np.abs(values)
    nonzero = magnitude[magnitude > 0]
    if nonzero.size == 0:
        return np.zeros_like(magnitude), np.sign(values)
    upper = np.percentile(magnitude, settings.clip_upper)
    lower = np.percentile(magnitude, min(settings.clip_lower, settings.clip_upper))
    if upper <= lower:
        upper = magnitude.max()
        lower = min(lower, upper * 0.999)
    intensity = np.clip((magnitude - lower) / max(upper - lower, 1e-12), 0, 1)
    sign = -np.ones_like(values) if settings.polarity == "NEGATIVE" else np.sign(values)
    return intensity, sign


def outline_intensity(intensity: np.ndarray) -> np.ndarray:
    """Outlines of the salient area (smoothed map above its mean), lightly shaded inside."""
    smooth = gaussian_blur(intensity, max(1.0, min(intensity.shape) / 64))
    if smooth.max() <= 0:
        return np.zeros_like(intensity)
    inside = smooth > smooth[smooth > 0].mean()
    padded = np.pad(inside, 1, mode="edge")
    interior = inside.copy()
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        interior &= padded[dy:dy + inside.shape[0], dx:dx + inside.shape[1]]
    edge = inside & ~interior
    return np.where(edge, 1.0, np.where(inside, 0.3 * smooth / smooth.max(), 0.0))


def render(attributions: np.ndarray, image: np.ndarray | None, settings: VisualizationSettings) -> np.ndarray:
    """uint8 RGB (H, W, 3) heatmap of (H, W) or (H, W, C) attributions."""
    values = np.asarray(attributions, np.float64)
    if values.ndim == 3:
        values = values.sum(axis=-1)
    intensity, sign = normalized_magnitude(values, settings)
    if settings.type == "OUTLINES":
        intensity = outline_intensity(intensity)
    colors = signed_colors(intensity, sign, settings.color_map)
    if settings.color_map == "VIRIDIS":
        colors = colors * (intensity[..., None] > 0) if settings.overlay != "NONE" else colors
    rgb = _overlay(colors, intensity, image, settings.overlay)
    return np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8)


def _overlay(colors: np.ndarray, intensity: np.ndarray, image: np.ndarray | None, overlay: str) -> np.ndarray:
    if overlay in ("NONE", "OVERLAY_TYPE_UNSPECIFIED") or image is None:
        return colors
    picture = _as_rgb_unit(image)
    if overlay == "MASK_BLACK":
        return picture * intensity[..., None]
    if overlay == "GRAYSCALE":
        picture = np.repeat(picture.mean(axis=-1, keepdims=True), 3, axis=-1)
    weight = intensity[..., None]
    return picture * (1 - 0.7 * weight) + colors * 0.7 * (weight > 0)


def _as_rgb_unit(image: np.ndarray) -> np.ndarray:
    picture = np.asarray(image, np.float64)
    if picture.ndim == 2:
        picture = picture[..., None]
    if picture.shape[-1] == 1:
        picture = np.repeat(picture, 3, axis=-1)
    picture = picture[..., :3]
    # Images arrive as [0, 1] floats or [0, 255] values; anything else is min-max scaled.
    low, high = picture.min(), picture.max()
    if low >= 0 and high <= 1:
        return picture
    if low >= 0 and high <= 255:
        return picture / 255.0
    return (picture - low) / (high - low)


def attribution_png(attributions: np.ndarray, image: np.ndarray | None, settings: VisualizationSettings) -> bytes:
    return encode_png(render(attributions, image, settings))


def attribution_b64_jpeg(attributions: np.ndarray, image: np.ndarray | None, settings: VisualizationSettings) -> str:
    """The heatmap as Vertex answers an image input's attribution: base64 JPEG text."""
    return base64.b64encode(encode_jpeg(render(attributions, image, settings))).decode("ascii")
