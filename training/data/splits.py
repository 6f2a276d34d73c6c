"""Seeded, group-aware splits and nested label-fraction subsets.

All images of one biopsy (the group taken from the file name) land in the same split,
so a model is never tested on tiles of a biopsy it trained on.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from training.data.labelled import DatasetError, LabelledImage

SPLIT_NAMES = ("train", "validation", "test")


@dataclass
class Splits:
    """The train, validation and test items, and the labelled subset of train."""

    train: list[LabelledImage]
    validation: list[LabelledImage]
    test: list[LabelledImage]
    labelled: list[LabelledImage] = field(default_factory=list)
    seed: int = 0
    label_fraction: float = 1.0

    def to_json(self, **extra) -> str:
        content = {
            "seed": self.seed,
            "label_fraction": self.label_fraction,
            **extra,
            "counts": {name: len(getattr(self, name)) for name in (*SPLIT_NAMES, "labelled")},
        }
        for name in (*SPLIT_NAMES, "labelled"):
            content[name] = [item.describe() for item in getattr(self, name)]
        return json.dumps(content, indent=2)


def _stable_seed(*parts) -> int:
    """Derive a seed from values, stable across processes (unlike ``hash``)."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def split_by_group(items: list[LabelledImage], validation: float, test: float, seed: int) -> Splits:
    """Assign whole groups to train, validation and test, balancing shares per stain.

    Groups are visited in a seeded order and each goes to the split that is furthest
    below its target share over the stains the group contains.
    """
    if not 0 < validation < 1 or not 0 < test < 1 or validation + test >= 1:
        raise DatasetError(
            f"Split shares validation={validation} and test={test} must each lie in (0, 1) and sum to less than 1."
        )
    by_group: dict[str, list[LabelledImage]] = defaultdict(list)
    for item in items:
        by_group[item.group].append(item)
    if len(by_group) < 3:
        raise DatasetError(
            f"A train/validation/test split needs at least 3 biopsies, but the file names give {len(by_group)} "
            f"({', '.join(sorted(by_group))}). Add images, or change data.group_pattern so that it finds the biopsy id."
        )

    shares = {"train": 1 - validation - test, "validation": validation, "test": test}
    stain_totals = Counter(item.stain for item in items)
    counts = {name: Counter() for name in SPLIT_NAMES}
    assigned: dict[str, list[LabelledImage]] = {name: [] for name in SPLIT_NAMES}

    rng = np.random.default_rng(seed)
    groups = sorted(by_group)
    for index in rng.permutation(len(groups)):
        members = by_group[groups[index]]
        group_stains = Counter(item.stain for item in members)

        def deficit(split: str) -> float:
            return sum(
                shares[split] - counts[split][stain] / stain_totals[stain] for stain in group_stains
            )

        # Validation and test first get one group each, so no split is left empty.
        empty = [name for name in ("test", "validation") if not assigned[name]]
        target = empty[0] if empty else max(SPLIT_NAMES, key=deficit)
        assigned[target] += members
        counts[target].update(group_stains)

    for name in SPLIT_NAMES:
        assigned[name].sort(key=lambda item: (item.stain, item.name))
    return Splits(assigned["train"], assigned["validation"], assigned["test"], seed=seed)


def select_labelled(train: list[LabelledImage], label_fraction: float, seed: int) -> list[LabelledImage]:
    """Draw the labelled subset of the training split, per stain.

    Each stain's images are put in one seeded order and the first
    ``max(1, round(label_fraction * n))`` are kept, so smaller fractions are nested
    inside larger ones for the same seed, and no stain is left without a label.
    """
    if not 0 < label_fraction <= 1:
        raise DatasetError(f"label_fraction={label_fraction} is invalid: it must satisfy 0 < label_fraction <= 1 (for example 0.05 for 5 %).")
    if not train:
        raise DatasetError("The training split is empty, so no labelled subset can be drawn. Add images or lower the validation and test shares.")
    by_stain: dict[str, list[LabelledImage]] = defaultdict(list)
    for item in sorted(train, key=lambda item: (item.stain, item.name)):
        by_stain[item.stain].append(item)
    selected: list[LabelledImage] = []
    for stain, stain_items in sorted(by_stain.items()):
        order = np.random.default_rng(_stable_seed(seed, stain)).permutation(len(stain_items))
        keep = max(1, round(label_fraction * len(stain_items)))
        selected += [stain_items[i] for i in order[:keep]]
    return sorted(selected, key=lambda item: (item.stain, item.name))


def make_splits(items: list[LabelledImage], validation: float, test: float, label_fraction: float, seed: int, repetition: int = 0) -> Splits:
    """Split by group with ``seed``, then draw the labelled subset for ``repetition``.

    The split itself depends on ``seed`` only, so every repetition and label fraction
    is evaluated on the same test images.
    """
    splits = split_by_group(items, validation, test, seed)
    splits.labelled = select_labelled(splits.train, label_fraction, _stable_seed(seed, "repetition", repetition))
    splits.label_fraction = label_fraction
    return splits
