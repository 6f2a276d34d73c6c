"""UNet geometry and the encoder contract."""

from __future__ import annotations

import numpy as np
import pytest

from training.models.unet import build_encoder, build_unet, encoder_padding, level_sizes, output_size


def test_study_geometry_508_to_324():
    assert level_sizes(508, 5, "valid") == [504, 248, 120, 56, 24]
    assert output_size(508, 5, "valid") == 324


def test_study_unet_shapes_with_few_filters():
    unet = build_unet(build_encoder(5, 2, "valid"), 508, "valid")
    assert unet.output_shape == (None, 324, 324, 2)


def test_invalid_patch_size_names_valid_ones():
    with pytest.raises(ValueError, match="Nearest valid sizes: .*508"):
        level_sizes(500, 5, "valid")


def test_encoder_contract_order_and_channels():
    encoder = build_encoder(3, 4, "same")
    features = encoder(np.zeros((2, 64, 64, 3), np.float32))
    assert [tuple(f.shape) for f in features] == [(2, 64, 64, 4), (2, 32, 32, 8), (2, 16, 16, 16)]


def test_encoder_accepts_any_size():
    encoder = build_encoder(2, 4, "same")
    assert encoder(np.zeros((1, 96, 80, 3), np.float32))[-1].shape == (1, 48, 40, 8)


def test_padding_is_inferred():
    assert encoder_padding(build_encoder(2, 2, "same")) == "same"
    assert encoder_padding(build_encoder(2, 2, "valid")) == "valid"


def test_decoder_fits_wider_encoder():
    import keras

    # An encoder whose features are twice as wide, as HR-CS-CO's concatenated paths are.
    base = build_encoder(2, 4, "same")
    inputs = keras.Input((None, None, 3))
    wide = keras.Model(inputs, [keras.layers.Concatenate()([f, f]) for f in base(inputs)])
    assert build_unet(wide, 64, "same").output_shape == (None, 64, 64, 2)


@pytest.mark.parametrize("kwargs,match", [({"depth": 1}, "depth"), ({"filters": 0}, "filters"), ({"padding": "full"}, "padding")])
def test_invalid_geometry_is_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_encoder(**{"depth": 3, "filters": 4, "padding": "same", **kwargs})
