"""Self-supervised pre-training: crop streams from unlabelled images, then ``fit()``."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from training.data.patches import CropSampler
from training.data.unlabelled import UnlabelledImages
from training.methods import Method
from training.optimization import build_optimizer


@dataclass
class CropDatasets:
    """Method inputs for training (an endless stream) and validation (fixed crops)."""

    train: tf.data.Dataset
    validation: tf.data.Dataset
    validation_crops: np.ndarray


def make_crop_datasets(images: UnlabelledImages, method: Method, config: dict) -> CropDatasets:
    data, train = config["data"], config["train"]
    patch_size, batch_size, seed = int(data["patch_size"]), int(train["batch_size"]), int(train["seed"])
    sampler = CropSampler([image for _, image in images.train], patch_size, seed=seed)
    validation_crops = CropSampler([image for _, image in images.validation], patch_size, seed=seed + 1).fixed_set(
        int(data["n_validation_patches"])
    )
    # Whole batches cross from Python to TensorFlow, one call per batch rather than per crop.
    spec = tf.TensorSpec((batch_size, patch_size, patch_size, 3), tf.uint8)
    crops = tf.data.Dataset.from_generator(lambda: sampler.batches(batch_size), output_signature=spec)
    # Each batch's views are made on one thread while tf.data works on several batches
    # at once, so the view ops do not compete with the training step for intra-op
    # threads. Measured with tests/benchmarks on 2 CPUs, SimCLR epochs of the small
    # configuration got about 5 % faster.
    options = tf.data.Options()
    options.threading.max_intra_op_parallelism = 1
    train_ds = method.make_inputs(crops, config).prefetch(tf.data.AUTOTUNE).with_options(options)
    # The validation views are drawn once and cached, so val_loss compares like with like.
    validation_batches = tf.data.Dataset.from_tensor_slices(validation_crops).batch(batch_size, drop_remainder=len(validation_crops) >= batch_size)
    validation_ds = method.make_inputs(validation_batches, config).cache()
    return CropDatasets(train_ds, validation_ds, validation_crops)


def preview_views(method, crops: np.ndarray, config: dict) -> tuple[np.ndarray, np.ndarray]:
    """Return the two views that ``method.make_inputs`` makes of a few uint8 crops, for figures.

    ``method`` is a Method or a Stage whose inputs are pairs of views.
    """
    batch = next(iter(method.make_inputs(tf.data.Dataset.from_tensors(crops), config)))
    view_1, view_2 = batch
    return np.asarray(view_1), np.asarray(view_2)


def compile_method_model(model: keras.Model, config: dict) -> None:
    train = config["train"]
    model.compile(optimizer=build_optimizer(train, int(train["steps_per_epoch"])))


def fit_method_model(model: keras.Model, datasets: CropDatasets, config: dict, callbacks=(), initial_epoch: int = 0) -> keras.callbacks.History:
    train = config["train"]
    return model.fit(
        datasets.train,
        validation_data=datasets.validation,
        epochs=int(train["epochs"]),
        steps_per_epoch=int(train["steps_per_epoch"]),
        callbacks=list(callbacks),
        initial_epoch=initial_epoch,
        verbose=int(train.get("verbose", 2)), shuffle=False,
    )
