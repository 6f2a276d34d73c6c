"""Whole-image prediction: exact output size and correct tile placement."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from training.inference import predict_mask, predict_probabilities


def _red_channel_model(patch_size: int, margin: int) -> keras.Model:
    """A model whose glomerulus probability is sigmoid(10 * (red - 0.5)) at each pixel.

    With a margin it crops like a valid-padded UNet, so tiles must be placed by the
    output size for the stitched result to match the per-pixel formula.
    """
    inputs = keras.Input((patch_size, patch_size, 3))
    x = keras.layers.Cropping2D(margin)(inputs) if margin else inputs
    logits = keras.layers.Conv2D(2, 1, use_bias=True)(x)
    model = keras.Model(inputs, keras.layers.Softmax()(logits))
    kernel = np.zeros((1, 1, 3, 2), np.float32)
    kernel[0, 0, 0] = [-5.0, 5.0]
    model.layers[-2].set_weights([kernel, np.array([2.5, -2.5], np.float32)])
    return model


@pytest.mark.parametrize("margin", [0, 6])
@pytest.mark.parametrize("shape", [(37, 53), (32, 32), (100, 71)])
def test_probabilities_match_per_pixel_formula(ihc_image, margin, shape):
    image = ihc_image[: shape[0], : shape[1]]
    model = _red_channel_model(32, margin)
    expected = 1 / (1 + np.exp(-10 * (image[..., 0] / 255.0 - 0.5)))
    probabilities = predict_probabilities(model, image)
    assert probabilities.shape == shape
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_mask_has_input_size_at_any_scale(ihc_image, scale):
    image = ihc_image[:99, :77]
    mask = predict_mask(_red_channel_model(32, 4), image, image_scale=scale)
    assert mask.shape == (99, 77)
    assert set(np.unique(mask)) <= {0, 1}
