"""Glomerulus segmentation: model assembly, patch datasets, fine-tuning and scoring."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from training.data.images import read_image, read_mask
from training.data.labelled import DatasetError, LabelledImage, LoadedImage, discover_labelled
from training.data.patches import SegmentationPatchSampler
from training.data.splits import Splits, make_splits
from training.inference import model_geometry, predict_mask
from training.metrics import Counts, confusion
from training.models.unet import build_encoder, build_unet, encoder_padding, level_sizes

logger = logging.getLogger(__name__)


def build_segmentation_model(config: dict, encoder: keras.Model | None = None) -> keras.Model:
    """Build a UNet for ``data.patch_size`` inputs, around a given encoder or a new one.

    A given encoder keeps its own padding and widths; ``segment.freeze_encoder`` makes
    its weights constant.
    """
    model_config = config["model"]
    patch_size = int(config["data"]["patch_size"])
    if encoder is None:
        encoder = build_encoder(model_config["depth"], model_config["filters"], model_config["padding"])
        padding = model_config["padding"]
    else:
        padding = encoder_padding(encoder)
        depth = len(encoder.outputs)
        if padding != model_config["padding"] or depth != model_config["depth"]:
            logger.info(
                "The encoder uses %s padding and depth %d; model.padding=%s and model.depth=%s are ignored.",
                padding, depth, model_config["padding"], model_config["depth"],
            )
        level_sizes(patch_size, depth, padding)
    encoder.trainable = not bool(config["segment"].get("freeze_encoder", False))
    return build_unet(encoder, patch_size, padding, classes=2)


def compile_segmentation_model(model: keras.Model, learning_rate: float) -> None:
    """Adam with sparse categorical cross-entropy, as in the study, plus glomerulus IoU."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.IoU(num_classes=2, target_class_ids=[1], sparse_y_true=True, sparse_y_pred=False, name="iou")],
    )


class F1FromIoU(keras.callbacks.Callback):
    """Add ``f1`` and ``val_f1`` to the epoch logs from the pooled glomerulus IoU.

    Over the same pixel counts F1 = 2 IoU / (1 + IoU). Placed first in the callback
    list, so later callbacks (checkpoints, tracking) see the F1 values.
    """

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        for prefix in ("", "val_"):
            iou = logs.get(f"{prefix}iou")
            if iou is not None:
                logs[f"{prefix}f1"] = 2 * float(iou) / (1 + float(iou))


def learning_rate_drop(learning_rate: float, epochs: int, drop_at: float, factor: float) -> keras.callbacks.Callback:
    """Return a callback that multiplies the rate by ``factor`` once ``drop_at`` of the epochs have passed."""
    drop_epoch = int(round(drop_at * epochs))

    def schedule(epoch, current):
        return learning_rate * factor if epoch >= drop_epoch else learning_rate

    return keras.callbacks.LearningRateScheduler(schedule)


@dataclass
class PatchDatasets:
    """Training stream and fixed validation set of (patch, mask) pairs."""

    train: tf.data.Dataset
    validation: tf.data.Dataset
    output_size: int
    validation_arrays: tuple[np.ndarray, np.ndarray] = field(repr=False, default=None)


def make_patch_datasets(train: list[LoadedImage], validation: list[LoadedImage], config: dict, output_size: int) -> PatchDatasets:
    data, train_config = config["data"], config["train"]
    patch_size = int(data["patch_size"])
    seed = int(train_config["seed"])
    sampler = SegmentationPatchSampler(
        [item.image for item in train], [item.mask for item in train], patch_size, output_size,
        foreground_share=float(data["foreground_share"]), augment=bool(data.get("augment", True)), seed=seed,
    )
    validation_sampler = SegmentationPatchSampler(
        [item.image for item in validation], [item.mask for item in validation], patch_size, output_size,
        foreground_share=float(data["foreground_share"]), augment=False, seed=seed + 1,
    )
    validation_arrays = validation_sampler.fixed_set(int(data["n_validation_patches"]))

    def to_float(patch, mask):
        return tf.cast(patch, tf.float32) / 255.0, mask

    signature = (
        tf.TensorSpec((patch_size, patch_size, 3), tf.uint8),
        tf.TensorSpec((output_size, output_size), tf.uint8),
    )
    batch_size = int(train_config["batch_size"])
    train_ds = (
        tf.data.Dataset.from_generator(lambda: iter(sampler), output_signature=signature)
        .batch(batch_size)
        .map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    validation_ds = tf.data.Dataset.from_tensor_slices(validation_arrays).batch(batch_size).map(to_float).cache()
    return PatchDatasets(train_ds, validation_ds, output_size, validation_arrays)


def prepare_splits(labelled_dir, config: dict) -> tuple[list[LabelledImage], list[str], Splits]:
    """Discover the labelled set and split it under ``config``, returning (items, stains, splits).

    With ``segment.stain`` other than ``all``, the labelled subset and the validation
    split keep that stain only, and the test split keeps every stain.
    """
    data, segment = config["data"], config["segment"]
    stain = str(segment["stain"])
    items = discover_labelled(labelled_dir, flat_stain=stain if stain != "all" else "default", group_pattern=data["group_pattern"])
    stains = sorted({item.stain for item in items})
    if stain != "all" and stain not in stains:
        raise DatasetError(f"stain={stain!r} is not in {labelled_dir}; its stains are {', '.join(stains)}. Pass one of them, or all.")
    splits = make_splits(
        items, float(data["validation_share"]), float(data["test_share"]), float(segment["label_fraction"]),
        seed=int(config["train"]["seed"]), repetition=int(segment["repetition"]),
    )
    if stain != "all":
        # Source-stain training: labels and validation come from one stain only.
        splits.labelled = [item for item in splits.labelled if item.stain == stain]
        splits.validation = [item for item in splits.validation if item.stain == stain]
        if not splits.labelled or not splits.validation:
            raise DatasetError(
                f"stain={stain!r} leaves {len(splits.labelled)} labelled and {len(splits.validation)} validation images. "
                "Add images of that stain or train on all stains."
            )
    return items, stains, splits


@dataclass
class SegmentationTraining:
    """A fitted UNet with its Keras history and the datasets it was trained on."""

    model: keras.Model
    history: keras.callbacks.History
    datasets: PatchDatasets


def train_segmentation_model(
    config: dict,
    training_images: list[LoadedImage],
    validation_images: list[LoadedImage],
    encoder: keras.Model | None = None,
    callbacks=(),
) -> SegmentationTraining:
    """Seed, build, compile and fit a UNet under ``config`` with ``fit()``.

    ``F1FromIoU`` and the learning-rate drop come first in the callback list, so the
    given ``callbacks`` (tracking, checkpoints) see ``f1`` and ``val_f1``.
    """
    train = config["train"]
    keras.utils.set_random_seed(int(train["seed"]))
    model = build_segmentation_model(config, encoder)
    compile_segmentation_model(model, float(train["learning_rate"]))
    datasets = make_patch_datasets(training_images, validation_images, config, int(model.output_shape[1]))

    schedule = [
        F1FromIoU(),
        learning_rate_drop(float(train["learning_rate"]), int(train["epochs"]), float(train["lr_drop_at"]), float(train["lr_drop_factor"])),
    ]
    history = model.fit(
        datasets.train, validation_data=datasets.validation, epochs=int(train["epochs"]),
        steps_per_epoch=int(train["steps_per_epoch"]), callbacks=schedule + list(callbacks),
        verbose=int(train.get("verbose", 2)), shuffle=False,
    )
    return SegmentationTraining(model, history, datasets)


@dataclass
class Evaluation:
    """Per-image and pooled glomerulus F1 on full-resolution test images."""

    per_image: list[dict]
    pooled: float
    per_stain: dict[str, float]


def evaluate(model: keras.Model, items, image_scale: float, progress: bool = True) -> Evaluation:
    """Predict every test image at full resolution and score it against its mask.

    ``items`` are :class:`~training.data.labelled.LabelledImage`; the files are read
    again at their original size so the score does not depend on ``image_scale``.
    """
    from tqdm.auto import tqdm

    per_image, totals = [], {}
    overall = Counts()
    for item in tqdm(items, desc="Scoring test images", unit="image", disable=not progress):
        image, truth = read_image(item.image_path), read_mask(item.mask_path)
        prediction = predict_mask(model, image, image_scale)
        counts = confusion(prediction, truth)
        per_image.append({**item.describe(), "f1": counts.f1, "tp": counts.tp, "fp": counts.fp, "fn": counts.fn})
        totals[item.stain] = totals.get(item.stain, Counts()) + counts
        overall = overall + counts
    return Evaluation(per_image, overall.f1, {stain: counts.f1 for stain, counts in sorted(totals.items())})


__all__ = [
    "build_segmentation_model", "compile_segmentation_model", "F1FromIoU", "learning_rate_drop",
    "make_patch_datasets", "prepare_splits", "train_segmentation_model", "SegmentationTraining",
    "evaluate", "Evaluation", "PatchDatasets", "model_geometry",
]
