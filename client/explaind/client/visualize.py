"""Attribution heatmaps returned in `Attribution.images`: decode to numpy, save, or show.

The server sends 8-bit PNGs; decoding needs only zlib and numpy (Pillow, when
installed, is used for other PNG flavours).
"""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG colour type -> channels


def decode_png(data: bytes) -> np.ndarray:
    """uint8 RGB array (H, W, 3) of a PNG (8-bit, non-interlaced, grey / RGB / with alpha)."""
    if not data.startswith(_SIGNATURE):
        raise ValueError("not a PNG")
    position, header, compressed = len(_SIGNATURE), None, []
    while position < len(data):
        (length,) = struct.unpack(">I", data[position:position + 4])
        kind = data[position + 4:position + 8]
        body = data[position + 8:position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            compressed.append(body)
        elif kind == b"IEND":
            break
    width, height, depth, color_type, _, _, interlace = header
    if depth != 8 or interlace or color_type not in _CHANNELS:
        return _decode_with_pillow(data)
    channels = _CHANNELS[color_type]
    raw = np.frombuffer(zlib.decompress(b"".join(compressed)), np.uint8).reshape(height, 1 + width * channels)
    pixels = _unfilter(raw[:, 0], raw[:, 1:].astype(np.int32), channels)
    image = pixels.reshape(height, width, channels)
    if channels in (1, 2):
        image = np.repeat(image[..., :1], 3, axis=-1)
    return np.ascontiguousarray(image[..., :3])


def _unfilter(filters: np.ndarray, rows: np.ndarray, bpp: int) -> np.ndarray:
    out = np.zeros_like(rows)
    previous = np.zeros(rows.shape[1], np.int32)
    for y, kind in enumerate(filters):
        row = rows[y]
        current = np.zeros_like(row)
        if kind == 0:
            current = row.copy()
        elif kind == 2:
            current = (row + previous) & 0xFF
        else:  # Sub, Average and Paeth depend on the reconstructed left neighbour: per byte
            for x in range(len(row)):
                left = current[x - bpp] if x >= bpp else 0
                up = previous[x]
                upper_left = previous[x - bpp] if x >= bpp else 0
                if kind == 1:
                    predictor = left
                elif kind == 3:
                    predictor = (left + up) // 2
                else:
                    p = left + up - upper_left
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - upper_left)
                    predictor = left if pa <= pb and pa <= pc else (up if pb <= pc else upper_left)
                current[x] = (row[x] + predictor) & 0xFF
        out[y] = current
        previous = current
    return out.astype(np.uint8)


def _decode_with_pillow(data: bytes) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError as error:
        raise ValueError("this PNG flavour needs Pillow (pip install pillow)") from error
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def attribution_image(attribution, input_name: str | None = None) -> np.ndarray:
    """The heatmap of an Attribution message for input_name (the only image input when omitted)."""
    images = attribution.images
    if input_name is None:
        if len(images) != 1:
            raise ValueError(f"name the input: this attribution has images for {sorted(images)}")
        input_name = next(iter(images))
    return decode_png(images[input_name])


def save_attribution_image(attribution, path: str, input_name: str | None = None) -> str:
    """Writes the attribution's PNG to path unchanged; returns path."""
    images = attribution.images
    name = input_name if input_name is not None else (next(iter(images)) if len(images) == 1 else None)
    if name is None or name not in images:
        raise ValueError(f"no single image to save; images: {sorted(images)}")
    with open(path, "wb") as handle:
        handle.write(images[name])
    return path


def show_attribution(attribution, input_name: str | None = None, axis=None):
    """Draws the heatmap with matplotlib (imported here: optional) and returns the axis."""
    import matplotlib.pyplot as plt

    axis = axis or plt.gca()
    axis.imshow(attribution_image(attribution, input_name))
    axis.set_axis_off()
    return axis
