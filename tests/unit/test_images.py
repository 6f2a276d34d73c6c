"""Reading every supported image and mask flavour, and rejecting what cannot be read."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tifffile
from PIL import Image

from training.data.images import ImageReadError, read_image, read_mask


@pytest.fixture
def tissue(ihc_image):
    """A 48x64 crop of real IHC tissue."""
    return ihc_image[100:148, 200:264].copy()


def _save_png16(path, array):
    path.write_bytes(tf.io.encode_png(array).numpy())


def test_png_rgb_round_trip(tmp_path, tissue):
    Image.fromarray(tissue).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), tissue)


def test_png_rgba_blends_onto_white(tmp_path, tissue):
    rgba = np.dstack([tissue, np.full(tissue.shape[:2], 255, np.uint8)])
    rgba[0, 0, 3] = 0
    Image.fromarray(rgba).save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(image[1:, 1:], tissue[1:, 1:])
    np.testing.assert_array_equal(image[0, 0], [255, 255, 255])


def test_png_grey_becomes_three_channels(tmp_path, tissue):
    grey = tissue[..., 0]
    Image.fromarray(grey).save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    assert image.shape == tissue.shape
    np.testing.assert_array_equal(image[..., 2], grey)


def test_png_palette_expands_to_rgb(tmp_path, tissue):
    Image.fromarray(tissue).quantize(colors=16).save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    assert image.shape == tissue.shape
    assert np.abs(image.astype(int) - tissue.astype(int)).mean() < 20


def test_png_16_bit_rgb_scales_to_8_bit(tmp_path, tissue):
    _save_png16(tmp_path / "a.png", tissue.astype(np.uint16) * 257)
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), tissue)


def test_png_16_bit_grey_scales_to_8_bit(tmp_path, tissue):
    _save_png16(tmp_path / "a.png", (tissue[..., :1].astype(np.uint16) * 257))
    np.testing.assert_array_equal(read_image(tmp_path / "a.png")[..., 0], tissue[..., 0])


def test_jpeg_reads_close_to_original(tmp_path, tissue):
    Image.fromarray(tissue).save(tmp_path / "a.jpg", quality=95)
    assert np.abs(read_image(tmp_path / "a.jpg").astype(int) - tissue.astype(int)).mean() < 4


@pytest.mark.parametrize("dtype,factor", [(np.uint8, 1), (np.uint16, 257)])
def test_tiff_rgb_8_and_16_bit(tmp_path, tissue, dtype, factor):
    tifffile.imwrite(tmp_path / "a.tif", tissue.astype(dtype) * factor)
    np.testing.assert_array_equal(read_image(tmp_path / "a.tif"), tissue)


def test_tiff_channels_first_is_transposed(tmp_path, tissue):
    tifffile.imwrite(tmp_path / "a.tiff", np.moveaxis(tissue, -1, 0), photometric="minisblack")
    np.testing.assert_array_equal(read_image(tmp_path / "a.tiff"), tissue)


def test_truncated_png_is_rejected(tmp_path, tissue):
    Image.fromarray(tissue).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "a.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="a.png"):
        read_image(tmp_path / "a.png")


def test_text_file_is_rejected(tmp_path):
    (tmp_path / "a.png").write_text("not an image")
    with pytest.raises(ImageReadError, match="not a readable image"):
        read_image(tmp_path / "a.png")


MASK = np.zeros((20, 30), np.uint8)
MASK[5:12, 8:20] = 1


@pytest.mark.parametrize("scale", [1, 255])
def test_mask_8_bit_zero_one_and_zero_255(tmp_path, scale):
    Image.fromarray(MASK * scale).save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), MASK)


def test_mask_16_bit(tmp_path):
    _save_png16(tmp_path / "m.png", (MASK.astype(np.uint16) * 65535)[..., None])
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), MASK)


def test_mask_palette_indices(tmp_path):
    image = Image.fromarray(MASK * 3, mode="P")
    image.putpalette([0, 0, 0, 10, 10, 10, 20, 20, 20, 255, 0, 0])
    image.save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), MASK)


def test_mask_one_bit(tmp_path):
    Image.fromarray(MASK.astype(bool)).save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), MASK)


def test_mask_grey_rgb_accepted(tmp_path):
    Image.fromarray(np.dstack([MASK * 255] * 3)).save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), MASK)


def test_mask_not_binary_is_rejected(tmp_path):
    soft = MASK * 255
    soft[5, 8] = 128
    Image.fromarray(soft).save(tmp_path / "m.png")
    with pytest.raises(ImageReadError, match="not binary.*128"):
        read_mask(tmp_path / "m.png")


def test_mask_jpeg_is_rejected(tmp_path):
    Image.fromarray(MASK * 255).save(tmp_path / "m.jpg")
    with pytest.raises(ImageReadError, match="JPEG"):
        read_mask(tmp_path / "m.jpg")


def test_mask_colour_is_rejected(tmp_path):
    colour = np.zeros((20, 30, 3), np.uint8)
    colour[MASK.astype(bool)] = [255, 0, 0]
    Image.fromarray(colour).save(tmp_path / "m.png")
    with pytest.raises(ImageReadError, match="channels differ"):
        read_mask(tmp_path / "m.png")


def test_missing_file_is_rejected(tmp_path):
    with pytest.raises(ImageReadError, match="not found"):
        read_mask(tmp_path / "absent.png")


def test_real_aidpath_pair_reads(aidpath):
    image = read_image(aidpath / "images" / "10003.png")
    mask = read_mask(aidpath / "masks" / "10003.png")
    assert image.shape == (1024, 1024, 3)
    assert mask.shape == (1024, 1024)
    assert set(np.unique(mask)) <= {0, 1}
