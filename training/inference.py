"""Whole-image prediction by tiling, for any image size.

A UNet with valid convolutions predicts only the centre of its input, so the image is
reflect-padded by the margin and tiled with a stride of the output size; the stitched
mask is cropped back to the input's exact height and width.
"""

from __future__ import annotations

import numpy as np

from training.data.resize import rescale_image, resize_mask_to


def model_geometry(model) -> tuple[int, int]:
    """Return (input side, output side) of a square segmentation model."""
    return int(model.input_shape[1]), int(model.output_shape[1])


def predict_probabilities(model, image: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """Return the glomerulus probability for every pixel of a uint8 RGB image."""
    patch_size, out_size = model_geometry(model)
    margin = (patch_size - out_size) // 2
    height, width = image.shape[:2]
    rows = -(-height // out_size)
    cols = -(-width // out_size)
    pad_bottom = rows * out_size - height
    pad_right = cols * out_size - width
    mode = "reflect" if min(height, width) > margin + max(pad_bottom, pad_right) else "symmetric"
    padded = np.pad(image, ((margin, margin + pad_bottom), (margin, margin + pad_right), (0, 0)), mode=mode)

    corners = [(r * out_size, c * out_size) for r in range(rows) for c in range(cols)]
    probabilities = np.zeros((rows * out_size, cols * out_size), dtype=np.float32)
    for start in range(0, len(corners), batch_size):
        chunk = corners[start : start + batch_size]
        tiles = np.stack([padded[top : top + patch_size, left : left + patch_size] for top, left in chunk])
        output = model.predict_on_batch(tiles.astype(np.float32) / 255.0)
        output = np.asarray(output)
        for (top, left), tile in zip(chunk, output):
            probabilities[top : top + out_size, left : left + out_size] = tile[..., 1]
    return probabilities[:height, :width]


def predict_mask(model, image: np.ndarray, image_scale: float = 1.0, threshold: float = 0.5) -> np.ndarray:
    """Predict a 0/1 mask with exactly the height and width of ``image``.

    The image is resized by ``image_scale`` (the magnification the model was trained
    at) before prediction, and the mask is resized back with nearest-neighbour sampling.
    """
    working = rescale_image(image, image_scale)
    mask = (predict_probabilities(model, working) >= threshold).astype(np.uint8)
    return resize_mask_to(mask, image.shape[:2])
