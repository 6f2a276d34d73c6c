"""Patch sampling from whole images, on the fly, for segmentation and pre-training."""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np


def pad_to_min_size(array: np.ndarray, size: int) -> np.ndarray:
    """Reflect-pad the first two axes up to ``size`` where the image is smaller."""
    pad_h = max(0, size - array.shape[0])
    pad_w = max(0, size - array.shape[1])
    if not pad_h and not pad_w:
        return array
    widths = [(pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2)] + [(0, 0)] * (array.ndim - 2)
    mode = "reflect" if min(array.shape[:2]) > 1 else "edge"
    return np.pad(array, widths, mode=mode)


def _random_dihedral(rng: np.random.Generator, *arrays: np.ndarray) -> list[np.ndarray]:
    """Apply one random rotation by 90-degree steps and flip to all arrays alike."""
    turns = int(rng.integers(4))
    flip = bool(rng.integers(2))
    out = []
    for array in arrays:
        array = np.rot90(array, turns, axes=(0, 1))
        if flip:
            array = array[:, ::-1]
        out.append(np.ascontiguousarray(array))
    return out


class SegmentationPatchSampler:
    """Draw (image patch, mask crop) pairs from labelled images.

    A share ``foreground_share`` of patches is centred on a random glomerulus pixel,
    the rest are placed uniformly at random. With valid convolutions the network's
    output is smaller than its input, so the mask is cropped to the central
    ``output_size`` pixels of the patch.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        masks: Sequence[np.ndarray],
        patch_size: int,
        output_size: int,
        foreground_share: float = 0.5,
        augment: bool = True,
        seed: int = 0,
    ):
        if not images:
            raise ValueError("SegmentationPatchSampler needs at least one image.")
        if not 0 <= foreground_share <= 1:
            raise ValueError(f"foreground_share={foreground_share} must lie in [0, 1].")
        if output_size > patch_size or (patch_size - output_size) % 2:
            raise ValueError(f"output_size={output_size} must not exceed patch_size={patch_size} and differ from it by an even number.")
        self.images = [pad_to_min_size(image, patch_size) for image in images]
        self.masks = [pad_to_min_size(mask, patch_size) for mask in masks]
        self.patch_size = patch_size
        self.output_size = output_size
        self.margin = (patch_size - output_size) // 2
        self.foreground_share = foreground_share
        self.augment = augment
        self.rng = np.random.default_rng(seed)
        # Foreground pixel coordinates per image, thinned to bound memory on large masks.
        self.foreground = [np.argwhere(mask[::4, ::4]) * 4 for mask in self.masks]
        self.has_foreground = [i for i, coords in enumerate(self.foreground) if len(coords)]

    def _corner(self, index: int, centred: bool) -> tuple[int, int]:
        height, width = self.images[index].shape[:2]
        if centred:
            coords = self.foreground[index]
            centre = coords[self.rng.integers(len(coords))]
            top = int(centre[0]) - self.patch_size // 2 + int(self.rng.integers(-8, 9))
            left = int(centre[1]) - self.patch_size // 2 + int(self.rng.integers(-8, 9))
        else:
            top = int(self.rng.integers(0, height - self.patch_size + 1))
            left = int(self.rng.integers(0, width - self.patch_size + 1))
        top = min(max(top, 0), height - self.patch_size)
        left = min(max(left, 0), width - self.patch_size)
        return top, left

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        centred = bool(self.has_foreground) and self.rng.random() < self.foreground_share
        index = int(self.rng.choice(self.has_foreground)) if centred else int(self.rng.integers(len(self.images)))
        top, left = self._corner(index, centred)
        size = self.patch_size
        patch = self.images[index][top : top + size, left : left + size]
        mask = self.masks[index][top : top + size, left : left + size]
        if self.augment:
            patch, mask = _random_dihedral(self.rng, patch, mask)
        m = self.margin
        return patch, mask[m : m + self.output_size, m : m + self.output_size]

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        while True:
            yield self.sample()

    def fixed_set(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``count`` pairs at once, for a validation set that stays the same each epoch."""
        pairs = [self.sample() for _ in range(count)]
        return np.stack([p for p, _ in pairs]), np.stack([m for _, m in pairs])


class CropSampler:
    """Draw random square crops from unlabelled images, larger images more often."""

    def __init__(self, images: Sequence[np.ndarray], patch_size: int, seed: int = 0):
        if not images:
            raise ValueError("CropSampler needs at least one image.")
        self.images = [pad_to_min_size(image, patch_size) for image in images]
        self.patch_size = patch_size
        areas = np.array([image.shape[0] * image.shape[1] for image in self.images], dtype=np.float64)
        self.weights = areas / areas.sum()
        self.rng = np.random.default_rng(seed)

    def sample(self) -> np.ndarray:
        index = int(self.rng.choice(len(self.images), p=self.weights))
        image = self.images[index]
        top = int(self.rng.integers(0, image.shape[0] - self.patch_size + 1))
        left = int(self.rng.integers(0, image.shape[1] - self.patch_size + 1))
        return image[top : top + self.patch_size, left : left + self.patch_size]

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            yield self.sample()

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """Yield endless batches of ``batch_size`` crops, the same crops in the same order as iterating."""
        while True:
            yield self.fixed_set(batch_size)

    def fixed_set(self, count: int) -> np.ndarray:
        return np.stack([self.sample() for _ in range(count)])
