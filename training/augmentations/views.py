"""SimCLR-style random views of a batch of patches, as TensorFlow ops.

The recipe follows Chen et al., 2020 (arXiv:2002.05709, appendix A): random resized
crop, horizontal and vertical flips (histology has no canonical orientation), colour
jitter, random greyscale and Gaussian blur. Every transform draws its parameters per
patch, so one call on a batch gives every patch its own view. Input and output are
float32 in [0, 1], NHWC.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf


@dataclass(frozen=True)
class ViewConfig:
    """Strengths and probabilities of the view transforms (study defaults)."""

    crop_scale: tuple[float, float] = (0.1, 1.0)
    flip: bool = True
    color_jitter_strength: float = 0.8
    color_jitter_probability: float = 0.8
    grayscale_probability: float = 0.2
    blur_probability: float = 0.5

    @classmethod
    def from_config(cls, section: dict) -> "ViewConfig":
        known = {k: v for k, v in section.items() if k in cls.__dataclass_fields__}
        if "crop_scale" in known:
            known["crop_scale"] = tuple(known["crop_scale"])
        config = cls(**known)
        low, high = config.crop_scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"augment.crop_scale={list(config.crop_scale)} must satisfy 0 < low <= high <= 1.")
        for name in ("color_jitter_probability", "grayscale_probability", "blur_probability"):
            if not 0 <= getattr(config, name) <= 1:
                raise ValueError(f"augment.{name}={getattr(config, name)} must lie in [0, 1].")
        return config


def _per_sample(probability: float, batch_size) -> tf.Tensor:
    """Boolean vector of shape (batch, 1, 1, 1): True where a transform applies."""
    return tf.reshape(tf.random.uniform([batch_size]) < probability, [-1, 1, 1, 1])


def random_resized_crop(images: tf.Tensor, scale: tuple[float, float], ratio=(3 / 4, 4 / 3)) -> tf.Tensor:
    """Crop a random area share in ``scale`` with aspect ratio in ``ratio``, resized back."""
    batch_size = tf.shape(images)[0]
    size = tf.shape(images)[1:3]
    area = tf.random.uniform([batch_size], scale[0], scale[1])
    log_ratio = tf.random.uniform([batch_size], tf.math.log(ratio[0]), tf.math.log(ratio[1]))
    aspect = tf.exp(log_ratio)
    height = tf.clip_by_value(tf.sqrt(area / aspect), 0.0, 1.0)
    width = tf.clip_by_value(tf.sqrt(area * aspect), 0.0, 1.0)
    top = tf.random.uniform([batch_size]) * (1.0 - height)
    left = tf.random.uniform([batch_size]) * (1.0 - width)
    boxes = tf.stack([top, left, top + height, left + width], axis=1)
    return tf.image.crop_and_resize(images, boxes, tf.range(batch_size), size)


def random_flips(images: tf.Tensor) -> tf.Tensor:
    batch_size = tf.shape(images)[0]
    images = tf.where(_per_sample(0.5, batch_size), tf.reverse(images, axis=[2]), images)
    return tf.where(_per_sample(0.5, batch_size), tf.reverse(images, axis=[1]), images)


def color_jitter(images: tf.Tensor, strength: float, probability: float) -> tf.Tensor:
    """Brightness, contrast, saturation (each up to 0.8 x strength) and hue (0.2 x strength)."""
    batch_size = tf.shape(images)[0]
    shape = [batch_size, 1, 1, 1]
    amount = 0.8 * strength

    jittered = images * tf.random.uniform(shape, 1 - amount, 1 + amount)
    mean = tf.reduce_mean(jittered, axis=[1, 2, 3], keepdims=True)
    jittered = (jittered - mean) * tf.random.uniform(shape, 1 - amount, 1 + amount) + mean
    grey = tf.image.rgb_to_grayscale(jittered)
    jittered = (jittered - grey) * tf.random.uniform(shape, 1 - amount, 1 + amount) + grey

    hsv = tf.image.rgb_to_hsv(tf.clip_by_value(jittered, 0.0, 1.0))
    hue_shift = tf.random.uniform([batch_size, 1, 1], -0.2 * strength, 0.2 * strength)
    hue = tf.math.floormod(hsv[..., 0] + hue_shift, 1.0)
    jittered = tf.image.hsv_to_rgb(tf.stack([hue, hsv[..., 1], hsv[..., 2]], axis=-1))

    return tf.where(_per_sample(probability, batch_size), tf.clip_by_value(jittered, 0.0, 1.0), images)


def random_grayscale(images: tf.Tensor, probability: float) -> tf.Tensor:
    grey = tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(images))
    return tf.where(_per_sample(probability, tf.shape(images)[0]), grey, images)


def random_blur(images: tf.Tensor, probability: float) -> tf.Tensor:
    """Gaussian blur with sigma in [0.1, 2] px for the batch and a kernel of 10 % of the side."""
    side = images.shape[1] or 64
    radius = max(1, side // 20)
    sigma = tf.random.uniform([], 0.1, 2.0)
    offsets = tf.cast(tf.range(-radius, radius + 1), tf.float32)
    kernel_1d = tf.exp(-0.5 * tf.square(offsets / sigma))
    kernel_1d /= tf.reduce_sum(kernel_1d)
    kernel = tf.tile(tf.reshape(kernel_1d, [-1, 1, 1, 1]), [1, 1, 3, 1])
    padded = tf.pad(images, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    blurred = tf.nn.depthwise_conv2d(padded, kernel, [1, 1, 1, 1], "VALID")
    blurred = tf.nn.depthwise_conv2d(blurred, tf.transpose(kernel, [1, 0, 2, 3]), [1, 1, 1, 1], "VALID")
    return tf.where(_per_sample(probability, tf.shape(images)[0]), blurred, images)


def random_view(images: tf.Tensor, config: ViewConfig) -> tf.Tensor:
    """Return one random view of each patch in a float32 batch in [0, 1]."""
    views = random_resized_crop(images, config.crop_scale)
    if config.flip:
        views = random_flips(views)
    views = color_jitter(views, config.color_jitter_strength, config.color_jitter_probability)
    views = random_grayscale(views, config.grayscale_probability)
    views = random_blur(views, config.blur_probability)
    return tf.clip_by_value(views, 0.0, 1.0)


def two_views(images: tf.Tensor, config: ViewConfig) -> tuple[tf.Tensor, tf.Tensor]:
    """Convert a uint8 batch to float and return two independent random views of it."""
    images = tf.cast(images, tf.float32) / 255.0
    return random_view(images, config), random_view(images, config)


def view_pairs(crops: tf.data.Dataset, config: dict) -> tf.data.Dataset:
    """Map batches of uint8 crops to pairs of random views made by the ``augment`` section's recipe."""
    view_config = ViewConfig.from_config(config.get("augment", {}))
    return crops.map(lambda batch: two_views(batch, view_config), num_parallel_calls=tf.data.AUTOTUNE)
