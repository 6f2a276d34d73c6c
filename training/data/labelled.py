"""Discover and load labelled images: ``<root>/images/[<stain>/]<name>.<ext>`` with
``<root>/masks/[<stain>/]<name>.png``, paired by file stem, never by listing order."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.data.images import IMAGE_SUFFIXES, LOSSY_SUFFIXES, MASK_SUFFIXES, ImageReadError, read_image, read_mask
from training.data.resize import rescale_image, rescale_mask

logger = logging.getLogger(__name__)

DEFAULT_GROUP_PATTERN = r"^([A-Za-z]*\d+)"


class DatasetError(ValueError):
    """A dataset folder that cannot be used as it is, with the files involved and the fix."""


@dataclass(frozen=True)
class LabelledImage:
    """One image file paired with its mask file."""

    name: str
    stain: str
    group: str
    image_path: Path
    mask_path: Path

    def describe(self) -> dict:
        return {"name": self.name, "stain": self.stain, "group": self.group}


@dataclass
class LoadedImage:
    """A labelled image decoded into memory at the configured scale."""

    item: LabelledImage
    image: np.ndarray
    mask: np.ndarray


def _list_files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith("."))


def group_of(name: str, pattern: str) -> str:
    """Return the biopsy id of a file stem: the first group of ``pattern``, else the stem."""
    match = re.search(pattern, name)
    if match is None:
        return name
    return match.group(1) if match.groups() else match.group(0)


def _stain_folders(images_dir: Path) -> list[Path]:
    subfolders = sorted(p for p in images_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = _list_files(images_dir, IMAGE_SUFFIXES)
    if subfolders and loose:
        raise DatasetError(
            f"{images_dir} contains both image files ({loose[0].name}, ...) and stain folders "
            f"({subfolders[0].name}, ...). Use one layout: images/<name>.<ext> or images/<stain>/<name>.<ext>."
        )
    return subfolders


def _pair_folder(image_folder: Path, mask_folder: Path, stain: str, group_pattern: str) -> tuple[list[LabelledImage], list[str]]:
    problems: list[str] = []
    pairs: list[LabelledImage] = []
    images_by_stem: dict[str, Path] = {}
    for path in _list_files(image_folder, IMAGE_SUFFIXES):
        if path.stem in images_by_stem:
            problems.append(f"{path} and {images_by_stem[path.stem]} share the stem {path.stem!r}: keep one of them.")
            continue
        images_by_stem[path.stem] = path

    masks_by_stem: dict[str, Path] = {}
    if mask_folder.is_dir():
        for path in sorted(mask_folder.iterdir()):
            if path.is_file() and path.suffix.lower() in MASK_SUFFIXES + LOSSY_SUFFIXES:
                masks_by_stem.setdefault(path.stem, path)

    for stem, image_path in sorted(images_by_stem.items()):
        mask_path = masks_by_stem.get(stem)
        if mask_path is None:
            problems.append(f"{image_path} has no mask: expected {mask_folder / (stem + '.png')}. Add the mask or move the image out of images/.")
            continue
        pairs.append(LabelledImage(stem, stain, group_of(stem, group_pattern), image_path, mask_path))

    for stem in sorted(set(masks_by_stem) - set(images_by_stem)):
        logger.warning("Mask %s has no image in %s; it is ignored.", masks_by_stem[stem], image_folder)
    return pairs, problems


def discover_labelled(root: Path | str, flat_stain: str = "default", group_pattern: str = DEFAULT_GROUP_PATTERN) -> list[LabelledImage]:
    """Pair every image under ``root/images`` with its mask under ``root/masks`` by stem.

    Images without a mask, duplicate stems and a missing folder raise one
    :class:`DatasetError` listing every problem. In the flat layout every image gets
    the stain ``flat_stain``.
    """
    root = Path(root)
    images_dir, masks_dir = root / "images", root / "masks"
    for folder in (images_dir, masks_dir):
        if not folder.is_dir():
            raise DatasetError(
                f"Labelled dataset {root} has no {folder.name}/ folder. Expected {root}/images/[<stain>/]<name>.<ext> "
                f"and {root}/masks/[<stain>/]<name>.png."
            )

    stain_folders = _stain_folders(images_dir)
    pairs: list[LabelledImage] = []
    problems: list[str] = []
    if stain_folders:
        for folder in stain_folders:
            found, issues = _pair_folder(folder, masks_dir / folder.name, folder.name, group_pattern)
            pairs += found
            problems += issues
    else:
        pairs, problems = _pair_folder(images_dir, masks_dir, flat_stain, group_pattern)

    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise DatasetError(f"Labelled dataset {root} has {len(problems)} problem(s):\n  {shown}{more}")
    if not pairs:
        raise DatasetError(f"Labelled dataset {root} contains no images with the suffixes {', '.join(IMAGE_SUFFIXES)}.")
    return pairs


def load_labelled(items: list[LabelledImage], image_scale: float = 1.0, progress: bool = True) -> list[LoadedImage]:
    """Decode and check every image and mask before training; raise one error for all bad files."""
    from tqdm.auto import tqdm

    loaded: list[LoadedImage] = []
    problems: list[str] = []
    for item in tqdm(items, desc="Reading labelled images", unit="image", disable=not progress):
        try:
            image = read_image(item.image_path)
            mask = read_mask(item.mask_path)
        except ImageReadError as error:
            problems.append(str(error))
            continue
        if image.shape[:2] != mask.shape:
            problems.append(
                f"{item.mask_path}: the mask is {mask.shape[1]}x{mask.shape[0]} pixels but its image "
                f"{item.image_path.name} is {image.shape[1]}x{image.shape[0]}. Export the mask at the image's size."
            )
            continue
        loaded.append(LoadedImage(item, rescale_image(image, image_scale), rescale_mask(mask, image_scale)))
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise DatasetError(f"{len(problems)} labelled file(s) cannot be used:\n  {shown}{more}")
    return loaded
