"""Rescaling images and masks to the working magnification."""

from __future__ import annotations

import numpy as np
from skimage.transform import resize


def scaled_shape(shape: tuple[int, ...], scale: float) -> tuple[int, int]:
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def rescale_image(image: np.ndarray, scale: float) -> np.ndarray:
    """Resize a uint8 RGB image by ``scale`` with anti-aliasing; identity for 1."""
    if scale == 1.0:
        return image
    resized = resize(image, scaled_shape(image.shape, scale) + (image.shape[2],), order=1, anti_aliasing=scale < 1, preserve_range=True)
    return np.round(resized).astype(np.uint8)


def rescale_mask(mask: np.ndarray, scale: float) -> np.ndarray:
    """Resize a 0/1 mask by ``scale`` with nearest-neighbour sampling, so it stays binary."""
    if scale == 1.0:
        return mask
    resized = resize(mask, scaled_shape(mask.shape, scale), order=0, anti_aliasing=False, preserve_range=True)
    return resized.astype(np.uint8)


def resize_mask_to(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a 0/1 mask to an exact (height, width) with nearest-neighbour sampling."""
    if mask.shape[:2] == tuple(shape):
        return mask
    return resize(mask, shape, order=0, anti_aliasing=False, preserve_range=True).astype(mask.dtype)
