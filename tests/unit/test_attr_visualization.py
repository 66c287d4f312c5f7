"""Heatmap rendering per the visualization config, PNG encoding and the client's decoder."""
import zlib

import numpy as np
import pytest

from explaind.client.visualize import attribution_image, decode_png, save_attribution_image
from explaind.server.attributions.png import encode_png
from explaind.server.attributions.visualization import Visualization, render, settings_for
from explaind.v1 import explanation_pb2


def test_png_round_trip_through_the_client_decoder():
    image = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    np.testing.assert_array_equal(decode_png(encode_png(image)), image)
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(decode_png(encode_png(gray))[..., 0], gray)


def test_client_decoder_handles_filtered_rows():
    # A hand-made 2x2 RGB PNG whose rows use the Sub (1) and Up (2) filters.
    rows = bytes([1, 10, 20, 30, 5, 5, 5]) + bytes([2, 1, 1, 1, 2, 2, 2])
    import struct

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    np.testing.assert_array_equal(decode_png(png), [[[10, 20, 30], [15, 25, 35]], [[11, 21, 31], [17, 27, 37]]])


def test_defaults_follow_vertex_per_method():
    ig, xrai = settings_for(None, "integrated_gradients"), settings_for(None, "xrai")
    assert (ig.type, ig.color_map, ig.polarity, ig.overlay) == ("OUTLINES", "PINK_GREEN", "POSITIVE", "NONE")
    assert (xrai.type, xrai.color_map) == ("PIXELS", "VIRIDIS")
    assert (ig.clip_upper, ig.clip_lower) == (99.9, 62.0)
    config = Visualization(type=Visualization.PIXELS, polarity=Visualization.BOTH, clip_percent_upperbound=90)
    custom = settings_for(config, "integrated_gradients")
    assert (custom.type, custom.polarity, custom.clip_upper, custom.clip_lower) == ("PIXELS", "BOTH", 90, 62.0)


def _attributions():
    values = np.zeros((16, 16))
    values[2:6, 2:6] = 1.0
    values[10:14, 10:14] = -1.0
    return values


@pytest.mark.parametrize("polarity, lit, dark", [("POSITIVE", (3, 3), (11, 11)), ("NEGATIVE", (11, 11), (3, 3))])
def test_polarity_selects_the_sign_shown(polarity, lit, dark):
    settings = settings_for(Visualization(type=Visualization.PIXELS, polarity=Visualization.Polarity.Value(polarity),
                                          clip_percent_lowerbound=1), "integrated_gradients")
    image = render(_attributions(), None, settings)
    assert image.shape == (16, 16, 3) and image.dtype == np.uint8
    assert image[lit].sum() > 0 and image[dark].sum() == 0


def test_pink_green_colours_signs_and_outlines_draw_edges():
    both = settings_for(Visualization(type=Visualization.PIXELS, polarity=Visualization.BOTH, clip_percent_lowerbound=1),
                        "integrated_gradients")
    image = render(_attributions(), None, both)
    assert image[3, 3, 1] > 0 and image[3, 3, 0] == 0      # positive: green
    assert image[11, 11, 0] > 0 and image[11, 11, 1] == 0  # negative: pink
    outlines = render(_attributions(), None, settings_for(Visualization(clip_percent_lowerbound=1), "integrated_gradients"))
    assert outlines.sum() > 0 and outlines[8, 8].sum() == 0


def test_overlays_use_the_image():
    picture = np.full((16, 16, 3), 0.5)
    mask = render(_attributions(), picture, settings_for(
        Visualization(type=Visualization.PIXELS, overlay_type=Visualization.MASK_BLACK, clip_percent_lowerbound=1), "xrai"))
    assert mask[0, 0].sum() == 0 and mask[3, 3].sum() > 0
    original = render(_attributions(), picture, settings_for(Visualization(overlay_type=Visualization.ORIGINAL), "xrai"))
    assert original[0, 0].sum() > 0  # the image shows through where nothing is attributed


def test_client_reads_and_saves_attribution_images(tmp_path):
    attribution = explanation_pb2.Attribution()
    pixels = np.random.default_rng(1).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    attribution.images["image"] = encode_png(pixels)
    np.testing.assert_array_equal(attribution_image(attribution), pixels)
    path = save_attribution_image(attribution, str(tmp_path / "a.png"))
    np.testing.assert_array_equal(decode_png(open(path, "rb").read()), pixels)
