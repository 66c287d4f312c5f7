"""JPEG bytes of a heatmap, the format of Vertex's `{"b64_jpeg": ...}` image attributions.

Only models with image inputs answer with pictures, and those are TensorFlow
models, so TensorFlow's encoder is used (imported here, not at module load).
"""
from __future__ import annotations

import numpy as np

QUALITY = 95


def encode_jpeg(image: np.ndarray) -> bytes:
    """JPEG bytes of a uint8 (H, W, 3) RGB or (H, W) grey array."""
    import tensorflow as tf

    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise ValueError(f"expected (H, W), (H, W, 1) or (H, W, 3), got {image.shape}")
    return tf.io.encode_jpeg(image, quality=QUALITY).numpy()
