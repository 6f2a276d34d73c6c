"""Ruifrok-Johnston colour deconvolution as Keras operations and a weightless Keras model.

Transmitted light through a stained section follows the Beer-Lambert law: the optical
density ``-ln(I)`` of each pixel (``I`` the RGB intensity in (0, 1]) is a sum of stain
vectors weighted by stain concentrations, ``OD = c @ rgb_from_stains``. Inverting the
stain matrix recovers ``c``. Units follow ``skimage.color.separate_stains`` (scikit-image
0.26), the reference implementation: intensities are floored at 1e-6 so that black
pixels stay finite, optical densities are divided by ``ln(1e6)``, and negative
concentrations are clipped to 0. A white pixel has zero concentration of every stain.

The networks of HR-CS-CO see each stain as a single-stain intensity image ``exp(-OD)``
in (0, 1], white where the stain is absent, as in CS-CO (Yang et al., 2022,
github.com/easonyang1996/CS-CO).
"""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import numpy as np
from keras import ops

logger = logging.getLogger(__name__)

INTENSITY_FLOOR = 1e-6
# Optical density of the darkest pixel after flooring, which is concentration 1.
LOG_SCALE = float(-np.log(INTENSITY_FLOOR))
REPRESENTATIONS = ("intensity", "concentration")


def _scale_to_unit_range(images):
    """Scale float or integer RGB batches to [0, 1], reading an image whose maximum exceeds 1 as 0-255."""
    images = ops.cast(images, "float32")
    maximum = ops.max(images, axis=(-3, -2, -1), keepdims=True)
    # NOTE: an image stored as 0-255 floats whose samples are all at most 1 (a nearly
    # black frame) is taken as [0, 1]. Stained tissue on glass is far brighter.
    return ops.where(maximum > 1.0, images / 255.0, images)


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    alpha = rgba[..., 3:4]
    return rgba[..., :3] * alpha + (1.0 - alpha)


def rgb_to_concentrations(rgb, stains_from_rgb: np.ndarray):
    """Return the stain concentrations (NHWC, one channel per stain) of RGB in [0, 1]."""
    optical_density = -ops.log(ops.maximum(rgb, INTENSITY_FLOOR)) / LOG_SCALE
    return ops.maximum(ops.matmul(optical_density, np.asarray(stains_from_rgb, dtype=np.float32)), 0.0)


def concentrations_to_rgb(concentrations, rgb_from_stains: np.ndarray):
    """Return the RGB image in [0, 1] that the given stain concentrations transmit."""
    optical_density = ops.matmul(concentrations * LOG_SCALE, np.asarray(rgb_from_stains, dtype=np.float32))
    return ops.clip(ops.exp(-optical_density), 0.0, 1.0)


def stain_intensity(concentrations):
    """Return the single-stain intensity image ``exp(-OD)`` in (0, 1] of a concentration."""
    return ops.exp(-concentrations * LOG_SCALE)


def build_stain_separation(rgb_from_stains, representation: str = "intensity", name: str = "stain_separation") -> keras.Model:
    """Build a model that separates RGB patches into haematoxylin (H) and counter-stain (O).

    The input is an NHWC batch of RGB as float in [0, 1], float in [0, 255] or integers
    in [0, 255]. An image whose maximum exceeds 1 is read as 0-255. The output is the
    list ``[haematoxylin, counter_stain]`` of (N, H, W, 1) tensors: single-stain
    intensities in (0, 1] for ``representation="intensity"``, else concentrations.

    The model is built from Keras operations with the inverted stain matrix as a
    constant. It has no weights, so fine-tuning cannot change the matrix, and it loads
    with plain ``keras.saving.load_model`` in a process that never imports this project.
    """
    matrix = np.asarray(rgb_from_stains, dtype=np.float64)
    if matrix.shape != (3, 3):
        raise ValueError(f"rgb_from_stains has shape {list(matrix.shape)}; it must be a 3x3 stain matrix (one row per stain).")
    if representation not in REPRESENTATIONS:
        raise ValueError(f"representation={representation!r} must be one of {', '.join(REPRESENTATIONS)}.")
    stains_from_rgb = np.linalg.inv(matrix).astype(np.float32)

    rgb = keras.Input(shape=(None, None, 3), name="rgb")
    concentrations = rgb_to_concentrations(_scale_to_unit_range(rgb), stains_from_rgb)
    channels = [concentrations[..., 0:1], concentrations[..., 1:2]]
    if representation == "intensity":
        channels = [stain_intensity(channel) for channel in channels]
    return keras.Model(rgb, channels, name=name)


def as_float_rgb(image: np.ndarray, source: str | Path | None = None) -> np.ndarray:
    """Convert an image or batch to float32 RGB in [0, 1], checking its samples.

    Accepted: uint8 and uint16 samples, float in [0, 1], and float in [0, 255], which
    is divided by 255 with a warning. RGBA is blended onto white. Grey images, other
    channel counts and out-of-range floats raise ValueError naming ``source``.
    """
    name = str(source) if source is not None else "image"
    array = np.asarray(image)
    if array.ndim < 3 or array.shape[-1] not in (3, 4):
        shape = list(array.shape)
        if array.ndim == 2 or (array.ndim >= 3 and array.shape[-1] == 1):
            raise ValueError(
                f"{name}: the image is grey (shape {shape}), and colour deconvolution needs RGB. "
                "Use the colour scan of this tissue, or leave the file out of stain separation."
            )
        raise ValueError(f"{name}: the image has shape {shape}; colour deconvolution needs RGB or RGBA (last axis 3 or 4).")

    if array.dtype == np.uint8:
        scaled = array.astype(np.float32) / 255.0
    elif array.dtype == np.uint16:
        scaled = array.astype(np.float32) / 65535.0
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError(f"{name}: the image contains NaN or infinite samples. Re-export it as 8-bit RGB.")
        low, high = float(array.min()), float(array.max())
        if low < 0 or high > 255:
            raise ValueError(f"{name}: float samples span [{low:.3g}, {high:.3g}]; expected [0, 1] or [0, 255].")
        scaled = array.astype(np.float32)
        if high > 1:
            logger.warning("%s: float samples span [%.3g, %.3g]; reading them as 0-255 and dividing by 255.", name, low, high)
            scaled = scaled / 255.0
    else:
        raise ValueError(f"{name}: unsupported sample type {array.dtype}; pass uint8, uint16 or float RGB.")

    if scaled.shape[-1] == 4:
        logger.info("%s: RGBA image, transparent pixels are blended onto white.", name)
        scaled = _composite_on_white(scaled).astype(np.float32)
    return scaled


# PIL modes of single-channel images: bilevel, grey (with alpha), 32-bit integer, 16-bit, float.
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


def reject_grey_images(files) -> None:
    """Raise ValueError naming every grey image among ``files``, read from their headers only.

    Colour deconvolution of a grey image returns stain channels that mean nothing, so
    stain separation needs the colour scan.
    """
    from PIL import Image, UnidentifiedImageError

    grey = []
    for path in files:
        try:
            with Image.open(path) as image:
                if image.mode in _GREY_MODES:
                    grey.append(f"{path} (mode {image.mode})")
        except (UnidentifiedImageError, OSError):
            # The image reader reports unreadable files with their own message.
            continue
    if grey:
        listing = "\n  ".join(grey[:20]) + (f"\n  ... and {len(grey) - 20} more" if len(grey) > 20 else "")
        raise ValueError(
            f"{len(grey)} image(s) are grey, and colour deconvolution needs RGB:\n  {listing}\n"
            "Use the colour scans of these slides, or move the files out of the data folder."
        )


def separate_stains(image: np.ndarray, rgb_from_stains: np.ndarray, source: str | Path | None = None) -> np.ndarray:
    """Return the concentrations of all three rows of ``rgb_from_stains`` for an RGB(A) image.

    Equals ``skimage.color.separate_stains(image, inv(rgb_from_stains))`` for RGB input.
    """
    rgb = as_float_rgb(image, source)
    stains_from_rgb = np.linalg.inv(np.asarray(rgb_from_stains, dtype=np.float64)).astype(np.float32)
    return ops.convert_to_numpy(rgb_to_concentrations(rgb, stains_from_rgb))


def combine_stains(concentrations: np.ndarray, rgb_from_stains: np.ndarray) -> np.ndarray:
    """Return the RGB image in [0, 1] of concentrations of all three stains (inverse of :func:`separate_stains`)."""
    return ops.convert_to_numpy(concentrations_to_rgb(np.asarray(concentrations, dtype=np.float32), rgb_from_stains))
