"""XRAI: rank image regions by attribution density (Kapishnikov et al., 2019).

Over-segment the image at several scales, dilate each segment a little, then
greedily grow a selection: at each step add the region whose not-yet-selected
pixels have the highest mean attribution, and give those pixels that density.
Pixels in earlier-chosen regions get higher values, so thresholding the map
at any level yields the most salient area of that size.
"""
from __future__ import annotations

import numpy as np

from .segmentation import felzenszwalb

# Felzenszwalb scales and sizes as used for 224x224 images; scaled to the image's area.
SEGMENT_SCALES = (50, 100, 150, 250, 500, 1200)
REFERENCE_AREA = 224 * 224
REFERENCE_MIN_SIZE = 150
REFERENCE_DILATION = 5


def segment_masks(image: np.ndarray, scales=SEGMENT_SCALES) -> np.ndarray:
    """Boolean masks (R, H, W) of dilated segments over all scales, duplicates removed."""
    image = np.asarray(image, np.float64)
    if image.ndim == 2:
        image = image[..., None]
    height, width = image.shape[:2]
    # Felzenszwalb's scale is in the image's units; map intensities to 0..255 first.
    low, high = image.min(), image.max()
    normalized = (image - low) * (255.0 / (high - low)) if high > low else np.zeros_like(image)
    area_ratio = height * width / REFERENCE_AREA
    min_size = max(1, int(round(REFERENCE_MIN_SIZE * area_ratio)))
    dilation = int(round(REFERENCE_DILATION * np.sqrt(area_ratio)))
    masks = []
    for scale in scales:
        labels = felzenszwalb(normalized, scale=scale, sigma=0.8, min_size=min_size)
        for label in range(labels.max() + 1):
            masks.append(_dilate(labels == label, dilation))
    unique = np.unique(np.stack(masks).reshape(len(masks), -1), axis=0)
    return unique.reshape(-1, height, width)


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    if radius <= 0:
        return mask
    out = mask.copy()
    height, width = mask.shape
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy * dy + dx * dx > radius * radius:
                continue
            shifted = np.zeros_like(mask)
            shifted[max(0, dy):height + min(0, dy), max(0, dx):width + min(0, dx)] = \
                mask[max(0, -dy):height + min(0, -dy), max(0, -dx):width + min(0, -dx)]
            out |= shifted
    return out


def xrai_regions(pixel_attributions: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """The XRAI map (H, W): each pixel gets the density of the region that first covered it."""
    height, width = pixel_attributions.shape
    attributions = pixel_attributions.reshape(-1).astype(np.float64)
    members = masks.reshape(len(masks), -1).astype(np.float64)
    # Running sums over each region's not-yet-selected pixels; updated as pixels get selected.
    sums = members @ attributions
    counts = members.sum(axis=1)
    result = np.full(height * width, np.nan)
    while np.any(counts > 0):
        density = np.where(counts > 0, sums / np.maximum(counts, 1), -np.inf)
        best = int(np.argmax(density))
        new_pixels = (members[best] > 0) & np.isnan(result)
        result[new_pixels] = density[best]
        sums -= members[:, new_pixels] @ attributions[new_pixels]
        counts -= members[:, new_pixels].sum(axis=1)
        counts[best] = 0
    uncovered = np.isnan(result)
    if uncovered.any():  # only when the masks miss pixels; give them their own mean
        result[uncovered] = attributions[uncovered].mean()
    return result.reshape(height, width)


def xrai(pixel_attributions: np.ndarray, image: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
    """XRAI map (H, W) from per-pixel attributions (H, W) and the image it explains."""
    if masks is None:
        masks = segment_masks(image)
    return xrai_regions(pixel_attributions, masks)
