"""Figures logged to runs: augmented views, predictions over images, learning curves."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def views_figure(view_1: np.ndarray, view_2: np.ndarray, count: int = 6, title: str = "Two random views per patch"):
    """Show the first ``count`` patches' two views, one column per patch."""
    count = min(count, len(view_1))
    figure, axes = plt.subplots(2, count, figsize=(2 * count, 4.3), squeeze=False)
    for column in range(count):
        for row, views in enumerate((view_1, view_2)):
            axis = axes[row][column]
            axis.imshow(np.clip(np.asarray(views[column]), 0, 1))
            axis.set_xticks([])
            axis.set_yticks([])
        axes[0][column].set_title(f"patch {column + 1}", fontsize=9)
    axes[0][0].set_ylabel("view 1")
    axes[1][0].set_ylabel("view 2")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def overlay(image: np.ndarray, mask: np.ndarray, colour=(0, 255, 0), alpha: float = 0.4) -> np.ndarray:
    """Blend ``colour`` into the pixels of ``mask`` and draw its outline opaque."""
    from skimage.segmentation import find_boundaries

    blended = image.astype(np.float32).copy()
    region = mask.astype(bool)
    blended[region] = (1 - alpha) * blended[region] + alpha * np.asarray(colour, dtype=np.float32)
    blended[find_boundaries(region, mode="inner")] = colour
    return blended.astype(np.uint8)


def predictions_figure(samples: list[dict], max_images: int = 4):
    """One row per test image: ground truth over the image, prediction over the image.

    Each sample has the keys ``image``, ``truth``, ``prediction``, ``name`` and ``f1``.
    """
    samples = samples[:max_images]
    figure, axes = plt.subplots(len(samples), 2, figsize=(9, 4.2 * len(samples)), squeeze=False)
    for row, sample in enumerate(samples):
        axes[row][0].imshow(overlay(sample["image"], sample["truth"], colour=(0, 200, 0)))
        axes[row][0].set_title(f"{sample['name']}: ground truth", fontsize=9)
        axes[row][1].imshow(overlay(sample["image"], sample["prediction"], colour=(230, 0, 200)))
        axes[row][1].set_title(f"prediction (F1 {sample['f1']:.3f})", fontsize=9)
        for axis in axes[row]:
            axis.axis("off")
    figure.tight_layout()
    return figure


def learning_curves_figure(history: dict[str, list[float]], title: str = "Learning curves"):
    """Plot each metric with its ``val_`` twin on one axis, one axis per metric."""
    names = [k for k in history if not k.startswith("val_") and k != "learning_rate"]
    figure, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2), squeeze=False)
    for axis, name in zip(axes[0], names):
        epochs = np.arange(1, len(history[name]) + 1)
        axis.plot(epochs, history[name], marker="o", label=name)
        if f"val_{name}" in history:
            axis.plot(epochs, history[f"val_{name}"], marker="o", label=f"val_{name}")
        axis.set_xlabel("epoch")
        axis.set_title(name)
        axis.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def close(figure) -> None:
    plt.close(figure)


def selection_scores_figure(models: list[dict], title: str, alias: str = "champion"):
    """Plot each model's version scores as bars, one axis per model.

    Each entry has the keys ``model``, ``scores`` (version to score), ``previous``
    (the version ``alias`` pointed to before) and ``champion`` (the version it points
    to now). The champion's bar is filled, the others are outlined, and a dashed line
    marks the previous version's score.
    """
    count = max(1, len(models))
    widest = max((len(entry["scores"]) for entry in models), default=1)
    width = max(4.5, 1.2 + 0.9 * widest)
    figure, axes = plt.subplots(1, count, figsize=(width * count, 3.6), squeeze=False)
    for axis, entry in zip(axes[0], models):
        versions = sorted(entry["scores"], key=int)
        values = [entry["scores"][v] for v in versions]
        positions = np.arange(len(versions))
        colours = ["tab:green" if v == entry["champion"] else "white" for v in versions]
        axis.bar(positions, values, color=colours, edgecolor="black")
        for position, value in zip(positions, values):
            axis.annotate(f"{value:.3f}", (position, value), ha="center", va="bottom", fontsize=8)
        if entry["previous"] in entry["scores"]:
            axis.axhline(entry["scores"][entry["previous"]], color="grey", linestyle="--", linewidth=1, label=f"previous {alias} (v{entry['previous']})")
            axis.legend(fontsize=8, loc="lower right")
        axis.set_xticks(positions, [f"v{v}" for v in versions])
        axis.set_ylim(0, max(1.0, max(values, default=0) * 1.15))
        axis.set_ylabel("validation F1")
        axis.set_title(f"{entry['model']}: {alias} v{entry['champion']}", fontsize=9)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure
