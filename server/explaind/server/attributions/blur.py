"""Gaussian blur over the spatial axes of an image (numpy only), and the blurred baseline.

Vertex's blur_baseline_config: integrated gradients along the straight path
from the maximally blurred image to the image, i.e. the blurred image is the
baseline. A blurred baseline keeps colours and coarse shapes, so attributions
point at fine detail rather than at "anything that is not black".
"""
from __future__ import annotations

import numpy as np


def gaussian_kernel(sigma: float) -> np.ndarray:
    radius = max(1, int(np.ceil(3.0 * sigma)))
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


def _convolve_axis(array: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    radius = len(kernel) // 2
    pad = [(0, 0)] * array.ndim
    pad[axis] = (radius, radius)
    padded = np.pad(array, pad, mode="reflect" if array.shape[axis] > radius else "edge")
    out = np.zeros_like(array, dtype=np.float64)
    for offset, weight in enumerate(kernel):
        out += weight * np.take(padded, np.arange(offset, offset + array.shape[axis]), axis=axis)
    return out


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Blurs a (H, W) or (H, W, C) array over H and W; sigma <= 0 returns a float copy."""
    image = np.asarray(image, dtype=np.float64)
    if sigma <= 0:
        return image.copy()
    kernel = gaussian_kernel(sigma)
    return _convolve_axis(_convolve_axis(image, kernel, 0), kernel, 1)


def blurred_baseline(image: np.ndarray, max_blur_sigma: float) -> np.ndarray:
    """The baseline for blur IG: the image blurred with sigma max_blur_sigma, in its dtype."""
    return gaussian_blur(image, max_blur_sigma).astype(np.asarray(image).dtype, copy=False)
