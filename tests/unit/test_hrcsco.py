"""HR-CS-CO: stage order, stage hand-over, the joined encoder and the stain views."""

from __future__ import annotations

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from training.config import resolve
from training.data.images import read_image
from training.methods import StageOrderError, get_method, stage_config
from training.methods.hrcsco import CONTRASTIVE, CROSS_STAIN, encoder_tags, perturb_stains
from training.models.unet import build_unet
from training.stain.deconvolution import separate_stains
from training.stain.matrices import stain_matrix
from training.stain.perturbation import PerturbationConfig

PATCH = 32
TINY = {
    "model.depth": 2,
    "model.filters": 4,
    "model.padding": "same",
    "data.patch_size": PATCH,
    "train.optimizer": "adam",
    "train.learning_rate": 1e-2,
    "train.epochs": 1,
    "train.steps_per_epoch": 2,
    "train.batch_size": 2,
    "method.stain": "16",
    "method.projection_head.hidden_units": 8,
    "method.projection_head.output_units": 4,
    "method.prediction_head.hidden_units": 8,
    "method.prediction_head.output_units": 4,
}


@pytest.fixture(scope="module")
def config():
    return resolve("hrcsco", None, TINY)


@pytest.fixture(scope="module")
def cd68_patches(multistain_patches):
    image = read_image(multistain_patches / "16" / "reference-patch.png")
    return np.stack([image[row : row + PATCH, 200 : 200 + PATCH] for row in (200, 400)]).astype("float32") / 255.0


def trained_cross_stain(config, patches):
    stage = get_method("hrcsco").get_stage(CROSS_STAIN)
    model = stage.build_model(stage_config(config, CROSS_STAIN), None)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.train_step(tf.constant(patches))
    return model


# Stages

def test_stages_run_cross_stain_first():
    method = get_method("hrcsco")
    assert method.stage_names == [CROSS_STAIN, CONTRASTIVE]
    assert method.build_model is method.stages[0].build_model


def test_contrastive_without_cross_stain_rejected(config):
    stage = get_method("hrcsco").get_stage(CONTRASTIVE)
    with pytest.raises(StageOrderError, match="Run stage 'cross_stain' first"):
        stage.build_model(stage_config(config, CONTRASTIVE), None)


def test_unknown_stage_lists_stages():
    with pytest.raises(ValueError, match="cross_stain, contrastive"):
        get_method("hrcsco").get_stage("contrastive_first")


def test_stage_config_overrides_train_keys(config):
    overridden = {**config, "stages": {CROSS_STAIN: {"epochs": 7}, CONTRASTIVE: {}}}
    assert stage_config(overridden, CROSS_STAIN)["train"]["epochs"] == 7
    assert stage_config(overridden, CROSS_STAIN)["train"]["batch_size"] == config["train"]["batch_size"]
    assert stage_config(overridden, CONTRASTIVE)["train"]["epochs"] == config["train"]["epochs"]


def test_contrastive_starts_from_stage_one_weights(config, cd68_patches, tmp_path):
    method = get_method("hrcsco")
    cross_stain = trained_cross_stain(config, cd68_patches)
    cross_stain.save_weights(tmp_path / "cross_stain.weights.h5")

    # A fresh stage-1 model loads the logged weights, and stage 2 is built around it.
    reloaded = method.get_stage(CROSS_STAIN).build_model(stage_config(config, CROSS_STAIN), None)
    reloaded.load_weights(tmp_path / "cross_stain.weights.h5")
    contrastive = method.get_stage(CONTRASTIVE).build_model(stage_config(config, CONTRASTIVE), reloaded)
    for expected, actual in zip(cross_stain.encoder.weights, contrastive.encoder.weights):
        np.testing.assert_array_equal(expected.numpy(), actual.numpy())
    for expected, actual in zip(cross_stain.encoder.weights, contrastive.target_encoder.weights):
        np.testing.assert_array_equal(expected.numpy(), actual.numpy())


def test_contrastive_step_freezes_decoders(config, cd68_patches):
    method = get_method("hrcsco")
    contrastive = method.get_stage(CONTRASTIVE).build_model(stage_config(config, CONTRASTIVE), trained_cross_stain(config, cd68_patches))
    contrastive.compile(optimizer=keras.optimizers.Adam(1e-2))
    decoders_before = [v.numpy() for v in contrastive.h_to_o_decoder.weights + contrastive.o_to_h_decoder.weights]
    encoder_before = [v.numpy() for v in contrastive.encoder.weights]

    views = next(iter(method.get_stage(CONTRASTIVE).make_inputs(tf.data.Dataset.from_tensors(np.uint8(cd68_patches * 255)), config)))
    logs = contrastive.train_step(views)

    for before, after in zip(decoders_before, contrastive.h_to_o_decoder.weights + contrastive.o_to_h_decoder.weights):
        np.testing.assert_array_equal(before, after.numpy())
    assert any(not np.allclose(b, a.numpy()) for b, a in zip(encoder_before, contrastive.encoder.weights))
    # loss = byol_loss + 20 x cross_stain_loss
    assert float(logs["loss"]) == pytest.approx(float(logs["byol_loss"]) + 20.0 * float(logs["cross_stain_loss"]), rel=1e-5)
    assert float(logs["momentum"]) == pytest.approx(0.99)


# Joined encoder

def test_encoder_concatenates_stain_paths(config, cd68_patches):
    model = trained_cross_stain(config, cd68_patches)
    features = model.encoder(cd68_patches)
    assert [tuple(f.shape) for f in features] == [(2, PATCH, PATCH, 8), (2, PATCH // 2, PATCH // 2, 16)]
    h_features = model.h_encoder(model.separate(cd68_patches)[0])
    np.testing.assert_allclose(features[-1].numpy()[..., :8], h_features[-1].numpy(), rtol=1e-5, atol=1e-6)


def test_encoder_takes_uint8_like_float(config, cd68_patches):
    model = trained_cross_stain(config, cd68_patches)
    as_uint8 = np.round(cd68_patches * 255).astype("uint8")
    np.testing.assert_allclose(model.encoder(as_uint8)[-1].numpy(), model.encoder(as_uint8 / 255.0)[-1].numpy(), rtol=1e-5, atol=1e-6)


def test_encoder_plugs_into_segmentation_unet(config, cd68_patches):
    model = trained_cross_stain(config, cd68_patches)
    unet = build_unet(model.encoder, PATCH, "same", classes=2)
    assert unet(cd68_patches).shape == (2, PATCH, PATCH, 2)


def test_encoder_loads_without_project_code(config, cd68_patches, tmp_path):
    model = trained_cross_stain(config, cd68_patches)
    model.encoder.save(tmp_path / "encoder.keras")
    np.save(tmp_path / "patches.npy", cd68_patches)
    script = (
        "import sys, numpy as np, keras\n"
        "m = keras.saving.load_model(sys.argv[1])\n"
        "assert not any(name.split('.')[0] == 'training' for name in sys.modules)\n"
        "np.save(sys.argv[3], np.asarray(m(np.load(sys.argv[2]))[-1]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    arguments = [str(tmp_path / name) for name in ("encoder.keras", "patches.npy", "bottleneck.npy")]
    subprocess.run([sys.executable, "-c", script, *arguments], cwd=tmp_path, env=env, check=True, timeout=300)
    np.testing.assert_allclose(np.load(tmp_path / "bottleneck.npy"), model.encoder(cd68_patches)[-1].numpy(), rtol=1e-5, atol=1e-6)


def test_encoder_tags_carry_stain(config):
    assert encoder_tags(config) == {"stain": "16", "counter_stain": "DAB"}


def test_valid_padding_crops_targets(config, cd68_patches):
    valid = resolve("hrcsco", None, {**TINY, "model.padding": "valid", "data.patch_size": 44})
    stage = get_method("hrcsco").get_stage(CROSS_STAIN)
    model = stage.build_model(stage_config(valid, CROSS_STAIN), None)
    predicted_counter_stain, _ = model(np.zeros((1, 44, 44, 3), dtype="float32") + 0.5)
    assert predicted_counter_stain.shape == (1, 28, 28, 1)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    logs = model.train_step(tf.fill([1, 44, 44, 3], 0.5))
    assert np.isfinite(float(logs["loss"]))


# Views

def test_identity_perturbation_keeps_rgb(cd68_patches):
    matrix = stain_matrix("16")
    unchanged = perturb_stains(tf.constant(cd68_patches), matrix, PerturbationConfig(alpha=(1.0, 1.0), beta=(0.0, 0.0))).numpy()
    concentrations = separate_stains(cd68_patches, matrix)
    np.testing.assert_allclose(separate_stains(unchanged, matrix), concentrations, atol=1e-4)

    # Pixels off the plane of the stain vectors lose their negative concentrations to
    # clipping, as in scikit-image. All other pixels come back unchanged.
    inside = (concentrations > 0).all(axis=-1)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(unchanged[inside], cd68_patches[inside], atol=2e-4)


def test_perturbed_views_deconvolve_to_perturbed_concentrations(cd68_patches):
    matrix = stain_matrix("16")
    doubled = perturb_stains(tf.constant(cd68_patches), matrix, PerturbationConfig(alpha=(2.0, 2.0), beta=(0.01, 0.01)))
    original = separate_stains(cd68_patches, matrix)
    recovered = separate_stains(doubled.numpy(), matrix)
    np.testing.assert_allclose(recovered[..., :2], 2.0 * original[..., :2] + 0.01, atol=1e-4)
    np.testing.assert_allclose(recovered[..., 2], original[..., 2], atol=1e-4)


def test_custom_stain_matrix_from_config():
    custom = resolve("hrcsco", None, {**TINY, "method.stain_matrix": [[0.65, 0.70, 0.29], [0.27, 0.57, 0.78]]})
    tags = encoder_tags(custom)
    assert tags["counter_stain"] == "custom"
    assert "stain_matrix" in tags
