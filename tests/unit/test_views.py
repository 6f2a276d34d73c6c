"""View transforms against step-by-step references and their identity cases."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from training.augmentations.views import (
    ViewConfig, color_jitter, color_matrices, gaussian_blur, random_blur, random_grayscale, random_resized_crop, two_views,
)


@pytest.fixture
def patches() -> tf.Tensor:
    rng = np.random.default_rng(0)
    return tf.constant(rng.uniform(size=(4, 16, 16, 3)).astype("float32"))


def reference_jitter(images, brightness, contrast, saturation):
    # The three steps one after the other, with per-sample factors.
    b, c, s = (tf.reshape(tf.constant(v, tf.float32), [-1, 1, 1, 1]) for v in (brightness, contrast, saturation))
    x = images * b
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    x = (x - mean) * c + mean
    grey = tf.image.rgb_to_grayscale(x)
    return (x - grey) * s + grey


def test_color_matrices_match_steps(patches):
    brightness, contrast, saturation = [0.5, 1.0, 1.4, 0.9], [1.2, 0.6, 1.0, 1.5], [0.3, 1.7, 1.0, 0.8]
    matrices, offsets = color_matrices(patches, tf.constant(brightness), tf.constant(contrast), tf.constant(saturation))
    combined = tf.einsum("bhwk,bdk->bhwd", patches, matrices) + offsets[:, None, None, :]
    np.testing.assert_allclose(combined.numpy(), reference_jitter(patches, brightness, contrast, saturation).numpy(), atol=1e-5)


def test_color_matrices_unit_factors_are_identity(patches):
    ones = tf.ones([4])
    matrices, offsets = color_matrices(patches, ones, ones, ones)
    np.testing.assert_allclose(matrices.numpy(), np.broadcast_to(np.eye(3), (4, 3, 3)), atol=1e-7)
    np.testing.assert_allclose(offsets.numpy(), 0.0, atol=1e-7)


def test_reversed_box_crops_mirrored(patches):
    # random_resized_crop relies on this to flip for free.
    boxes = tf.constant([[0.1, 0.2, 0.7, 0.9]] * 4)
    crops = tf.image.crop_and_resize(patches, boxes, tf.range(4), [16, 16])
    left_right = tf.image.crop_and_resize(patches, tf.gather(boxes, [0, 3, 2, 1], axis=1), tf.range(4), [16, 16])
    up_down = tf.image.crop_and_resize(patches, tf.gather(boxes, [2, 1, 0, 3], axis=1), tf.range(4), [16, 16])
    np.testing.assert_allclose(left_right.numpy(), tf.reverse(crops, axis=[2]).numpy(), atol=1e-5)
    np.testing.assert_allclose(up_down.numpy(), tf.reverse(crops, axis=[1]).numpy(), atol=1e-5)


def test_full_crop_keeps_or_mirrors_image(patches):
    tf.random.set_seed(3)
    crops = random_resized_crop(patches, (1.0, 1.0), ratio=(1.0, 1.0), flip=True).numpy()
    images = patches.numpy()
    for crop, image in zip(crops, images):
        candidates = [image, image[:, ::-1], image[::-1], image[::-1, ::-1]]
        assert min(np.abs(crop - candidate).max() for candidate in candidates) < 1e-5


def test_jitter_probability_zero_keeps_images(patches):
    np.testing.assert_allclose(color_jitter(patches, 0.8, 0.0).numpy(), patches.numpy(), atol=1e-5)


def test_jitter_stays_in_unit_range(patches):
    jittered = color_jitter(patches, 1.0, 1.0).numpy()
    assert jittered.min() >= 0.0
    assert jittered.max() <= 1.0


def test_grayscale_probability_one_gives_luma(patches):
    grey = random_grayscale(patches, 1.0).numpy()
    np.testing.assert_allclose(grey, np.repeat(tf.image.rgb_to_grayscale(patches).numpy(), 3, axis=-1), atol=1e-6)


def test_grayscale_probability_zero_keeps_images(patches):
    np.testing.assert_array_equal(random_grayscale(patches, 0.0).numpy(), patches.numpy())


def test_blur_probability_zero_keeps_images(patches):
    np.testing.assert_array_equal(random_blur(patches, 0.0).numpy(), patches.numpy())


def test_blur_probability_one_blurs_every_image(patches):
    blurred = random_blur(patches, 1.0).numpy()
    assert np.abs(blurred - patches.numpy()).max() > 1e-3
    # Blurring smooths: the pixel-to-pixel variation never grows.
    assert np.abs(np.diff(blurred, axis=2)).mean() < np.abs(np.diff(patches.numpy(), axis=2)).mean()


def test_blur_keeps_constant_image():
    constant = tf.fill([2, 16, 16, 3], 0.25)
    np.testing.assert_allclose(gaussian_blur(constant, tf.constant(1.5), 3).numpy(), 0.25, atol=1e-6)


def test_two_views_shape_and_range():
    crops = tf.constant(np.random.default_rng(1).integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8))
    view_1, view_2 = two_views(crops, ViewConfig())
    for view in (view_1, view_2):
        assert view.shape == (3, 32, 32, 3)
        assert view.dtype == tf.float32
        assert float(tf.reduce_min(view)) >= 0.0
        assert float(tf.reduce_max(view)) <= 1.0
    assert float(tf.reduce_max(tf.abs(view_1 - view_2))) > 0.0


def test_zero_strength_jitter_returns_input(patches):
    assert color_jitter(patches, 0.0, 0.8) is patches
