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


# Luma weights of tf.image.rgb_to_grayscale (ITU-R BT.601).
LUMA_WEIGHTS = (0.2989, 0.5870, 0.1140)


def _per_sample(probability: float, batch_size) -> tf.Tensor:
    """Boolean vector of shape (batch, 1, 1, 1): True where a transform applies."""
    return tf.reshape(tf.random.uniform([batch_size]) < probability, [-1, 1, 1, 1])


def _apply_matrices(images: tf.Tensor, matrices: tf.Tensor, offsets: tf.Tensor | None = None) -> tf.Tensor:
    """Map every pixel ``x`` of sample ``b`` to ``matrices[b] @ x + offsets[b]``."""
    mixed = tf.einsum("bhwk,bdk->bhwd", images, matrices)
    if offsets is None:
        return mixed
    return mixed + offsets[:, tf.newaxis, tf.newaxis, :]


def random_resized_crop(images: tf.Tensor, scale: tuple[float, float], ratio=(3 / 4, 4 / 3), flip: bool = False) -> tf.Tensor:
    """Crop a random area share in ``scale`` with aspect ratio in ``ratio``, resized back.

    With ``flip``, each crop is also flipped left-right and up-down, each with
    probability 0.5. A box whose end lies before its start makes
    ``tf.image.crop_and_resize`` sample it mirrored, so the flips cost no extra pass.
    """
    batch_size = tf.shape(images)[0]
    size = tf.shape(images)[1:3]
    area = tf.random.uniform([batch_size], scale[0], scale[1])
    log_ratio = tf.random.uniform([batch_size], tf.math.log(ratio[0]), tf.math.log(ratio[1]))
    aspect = tf.exp(log_ratio)
    height = tf.clip_by_value(tf.sqrt(area / aspect), 0.0, 1.0)
    width = tf.clip_by_value(tf.sqrt(area * aspect), 0.0, 1.0)
    top = tf.random.uniform([batch_size]) * (1.0 - height)
    left = tf.random.uniform([batch_size]) * (1.0 - width)
    bottom, right = top + height, left + width
    if flip:
        flip_left_right = tf.random.uniform([batch_size]) < 0.5
        flip_up_down = tf.random.uniform([batch_size]) < 0.5
        left, right = tf.where(flip_left_right, right, left), tf.where(flip_left_right, left, right)
        top, bottom = tf.where(flip_up_down, bottom, top), tf.where(flip_up_down, top, bottom)
    boxes = tf.stack([top, left, bottom, right], axis=1)
    return tf.image.crop_and_resize(images, boxes, tf.range(batch_size), size)


def random_flips(images: tf.Tensor) -> tf.Tensor:
    """Flip each image left-right and up-down, each with probability 0.5."""
    batch_size = tf.shape(images)[0]
    images = tf.where(_per_sample(0.5, batch_size), tf.reverse(images, axis=[2]), images)
    return tf.where(_per_sample(0.5, batch_size), tf.reverse(images, axis=[1]), images)


def color_matrices(images: tf.Tensor, brightness: tf.Tensor, contrast: tf.Tensor, saturation: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Return per-sample 3x3 matrices and offsets that scale brightness, contrast and saturation in turn.

    The three steps are linear in the pixel ``x``. Brightness gives ``b * x``, contrast
    ``c * x + (1 - c) * mean`` around the image mean, and saturation
    ``s * x + (1 - s) * luma`` around the pixel's luma ``w . x``. Composed, they are
    ``M @ x + t`` with ``M = c * b * A``, ``A = s * I + (1 - s) * 1 w^T`` and
    ``t = (1 - c) * b * mean(x) * A 1``. The factors have shape (batch,), and factors
    of 1 leave a sample unchanged.
    """
    weights = tf.constant(LUMA_WEIGHTS, tf.float32)
    b, c, s = (tf.reshape(factor, [-1, 1, 1]) for factor in (brightness, contrast, saturation))
    saturate = s * tf.eye(3) + (1.0 - s) * weights[tf.newaxis, tf.newaxis, :]
    matrices = c * b * saturate
    means = tf.reshape(tf.reduce_mean(images, axis=[1, 2, 3]), [-1, 1])
    offsets = (1.0 - c[:, :, 0]) * b[:, :, 0] * means * tf.reduce_sum(saturate, axis=2)
    return matrices, offsets


def shift_hue(images: tf.Tensor, shifts: tf.Tensor) -> tf.Tensor:
    """Rotate each image's hue by its own share of the colour circle, ``shifts`` of shape (batch,)."""
    return tf.map_fn(lambda pair: tf.image.adjust_hue(pair[0], pair[1]), (images, shifts), fn_output_signature=images.dtype)


def color_jitter(images: tf.Tensor, strength: float, probability: float) -> tf.Tensor:
    """Brightness, contrast, saturation (each up to 0.8 x strength) and hue (0.2 x strength).

    Samples left out by ``probability`` get factors of 1 and a hue shift of 0, which
    leaves them unchanged up to float rounding in the HSV round trip. With a probability
    or strength of 0 the images are returned as they are, without that round trip.
    """
    if probability == 0 or strength == 0:
        return images
    batch_size = tf.shape(images)[0]
    amount = 0.8 * strength
    selected = tf.random.uniform([batch_size]) < probability

    def factor(low, high):
        return tf.where(selected, tf.random.uniform([batch_size], low, high), tf.ones([batch_size]))

    brightness, contrast, saturation = factor(1 - amount, 1 + amount), factor(1 - amount, 1 + amount), factor(1 - amount, 1 + amount)
    hue_shift = tf.where(selected, tf.random.uniform([batch_size], -0.2 * strength, 0.2 * strength), tf.zeros([batch_size]))

    matrices, offsets = color_matrices(images, brightness, contrast, saturation)
    jittered = tf.clip_by_value(_apply_matrices(images, matrices, offsets), 0.0, 1.0)
    return tf.clip_by_value(shift_hue(jittered, hue_shift), 0.0, 1.0)


def random_grayscale(images: tf.Tensor, probability: float) -> tf.Tensor:
    """Replace every channel by the luma of the pixel, per sample with ``probability``."""
    if probability == 0:
        return images
    batch_size = tf.shape(images)[0]
    selected = tf.reshape(tf.cast(tf.random.uniform([batch_size]) < probability, tf.float32), [-1, 1, 1])
    luma = tf.ones([3, 1]) * tf.constant([LUMA_WEIGHTS], tf.float32)
    matrices = tf.eye(3) + selected * (luma - tf.eye(3))
    return _apply_matrices(images, matrices)


def gaussian_blur(images: tf.Tensor, sigma: tf.Tensor, radius: int) -> tf.Tensor:
    """Blur every image with one Gaussian of standard deviation ``sigma`` pixels, reflecting at the borders."""
    offsets = tf.cast(tf.range(-radius, radius + 1), tf.float32)
    kernel_1d = tf.exp(-0.5 * tf.square(offsets / sigma))
    kernel_1d /= tf.reduce_sum(kernel_1d)
    kernel = tf.tile(tf.reshape(kernel_1d, [-1, 1, 1, 1]), [1, 1, 3, 1])
    padded = tf.pad(images, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    blurred = tf.nn.depthwise_conv2d(padded, kernel, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(blurred, tf.transpose(kernel, [1, 0, 2, 3]), [1, 1, 1, 1], "VALID")


def random_blur(images: tf.Tensor, probability: float) -> tf.Tensor:
    """Gaussian blur with sigma in [0.1, 2] px for the batch and a kernel of 10 % of the side.

    Only the samples chosen by ``probability`` are blurred; the others are copied.
    """
    if probability == 0:
        return images
    side = images.shape[1] or 64
    radius = max(1, side // 20)
    sigma = tf.random.uniform([], 0.1, 2.0)
    chosen = tf.where(tf.random.uniform([tf.shape(images)[0]]) < probability)

    def blur_chosen():
        return tf.tensor_scatter_nd_update(images, chosen, gaussian_blur(tf.gather_nd(images, chosen), sigma, radius))

    # MirrorPad rejects an empty batch, so a batch with no sample chosen is returned as it is.
    return tf.cond(tf.shape(chosen)[0] > 0, blur_chosen, lambda: tf.identity(images))


def random_view(images: tf.Tensor, config: ViewConfig) -> tf.Tensor:
    """Return one random view of each patch in a float32 batch in [0, 1]."""
    views = random_resized_crop(images, config.crop_scale, flip=config.flip)
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
