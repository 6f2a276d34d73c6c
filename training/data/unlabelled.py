"""Discover and load unlabelled images for self-supervised pre-training.

Two layouts are accepted, a domain being a stain:

* ``<root>/{train,validation}/<domain>/*.png``: the validation images are given;
* ``<root>/<domain>/*`` (or images directly in ``<root>``, one domain): images of any
  size. A validation share is held out per domain: whole images where a domain has
  several, else a strip along the bottom of its single image.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.data.images import IMAGE_SUFFIXES, ImageReadError, read_image
from training.data.labelled import DatasetError
from training.data.resize import rescale_image

logger = logging.getLogger(__name__)


@dataclass
class UnlabelledImages:
    """Decoded training and validation images, each tagged with its domain."""

    train: list[tuple[str, np.ndarray]] = field(default_factory=list)
    validation: list[tuple[str, np.ndarray]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    layout: str = ""

    @property
    def domains(self) -> list[str]:
        return sorted({domain for domain, _ in self.train})


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def discover_unlabelled(root: Path | str, domains: list[str] | None = None) -> tuple[str, dict[str, dict[str, list[Path]]]]:
    """Return the layout name and ``{split: {domain: [files]}}``; split is train or validation,
    or ``all`` where the layout has no validation folder."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"Unlabelled data folder {root} not found. Pass an existing folder as data_dir.")
    if (root / "train").is_dir() and (root / "validation").is_dir():
        layout = "train-validation"
        found = {split: {d.name: _images_in(d) for d in _subfolders(root / split)} for split in ("train", "validation")}
    else:
        folders = _subfolders(root)
        loose = _images_in(root)
        if folders and loose:
            raise DatasetError(
                f"{root} contains both image files ({loose[0].name}, ...) and domain folders ({folders[0].name}, ...). "
                "Use one layout: <root>/<domain>/<images> or images directly in <root>."
            )
        layout = "domains" if folders else "flat"
        found = {"all": {d.name: _images_in(d) for d in folders} if folders else {root.name: loose}}

    available = sorted({domain for per_domain in found.values() for domain in per_domain})
    if domains:
        missing = [d for d in domains if d not in available]
        if missing:
            raise DatasetError(
                f"Stain {', '.join(missing)} not found in {root}. Available domain folders: {', '.join(available) or 'none'}."
            )
        found = {split: {d: files for d, files in per_domain.items() if d in domains} for split, per_domain in found.items()}

    total = sum(len(files) for per_domain in found.values() for files in per_domain.values())
    if total == 0:
        raise DatasetError(f"No images with the suffixes {', '.join(IMAGE_SUFFIXES)} found under {root}.")
    return layout, found


def _split_strip(image: np.ndarray, share: float, patch_size: int, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    height = image.shape[0]
    rows = max(patch_size, round(share * height))
    if height - rows < patch_size:
        logger.warning(
            "%s is too small (%d rows) to hold out a validation strip of %d rows and keep a %d px training patch; "
            "it is used for training only.", path, height, rows, patch_size,
        )
        return image, None
    return image[: height - rows], image[height - rows :]


def load_unlabelled(
    root: Path | str,
    patch_size: int,
    image_scale: float = 1.0,
    validation_share: float = 0.2,
    domains: list[str] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> UnlabelledImages:
    """Read every image (rejecting unreadable ones before training) and hold out validation."""
    from tqdm.auto import tqdm

    layout, found = discover_unlabelled(root, domains)
    result = UnlabelledImages(layout=layout)
    problems: list[str] = []
    all_files = [(split, domain, path) for split, per_domain in found.items() for domain, files in per_domain.items() for path in files]

    decoded: dict[tuple[str, str], list[tuple[Path, np.ndarray]]] = {}
    for split, domain, path in tqdm(all_files, desc="Reading unlabelled images", unit="image", disable=not progress):
        try:
            image = rescale_image(read_image(path), image_scale)
        except ImageReadError as error:
            problems.append(str(error))
            continue
        decoded.setdefault((split, domain), []).append((path, image))
        result.files.append(path)
    if problems:
        raise DatasetError(f"{len(problems)} unlabelled file(s) cannot be used:\n  " + "\n  ".join(problems[:20]))

    rng = np.random.default_rng(seed)
    for (split, domain), entries in sorted(decoded.items(), key=lambda kv: kv[0]):
        if split in ("train", "validation"):
            getattr(result, split).extend((domain, image) for _, image in entries)
            continue
        if len(entries) >= 2:
            n_validation = min(len(entries) - 1, max(1, round(validation_share * len(entries))))
            order = rng.permutation(len(entries))
            for rank, index in enumerate(order):
                target = result.validation if rank < n_validation else result.train
                target.append((domain, entries[index][1]))
        else:
            path, image = entries[0]
            train_part, validation_part = _split_strip(image, validation_share, patch_size, path)
            result.train.append((domain, train_part))
            if validation_part is not None:
                result.validation.append((domain, validation_part))

    if not result.train:
        raise DatasetError(f"No training images remain under {root} after holding out validation.")
    if not result.validation:
        logger.warning("No validation images could be held out under %s; validation uses training crops.", root)
        result.validation = list(result.train)
    return result
