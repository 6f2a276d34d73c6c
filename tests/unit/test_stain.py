"""Stain matrices, colour deconvolution and concentration perturbation."""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf
from skimage import data
from skimage.color import separate_stains as skimage_separate_stains

from training.stain.deconvolution import (
    LOG_SCALE,
    as_float_rgb,
    build_stain_separation,
    reject_grey_images,
    combine_stains,
    separate_stains,
    stain_intensity,
)
from training.stain.matrices import COUNTER_STAINS, HAEMATOXYLIN, SIRIUS_RED, matrix_from_vectors, normalise_stain_code, stain_matrix
from training.stain.perturbation import PerturbationConfig, perturb_concentrations

PAS_MATRIX = stain_matrix("02")


# Stain matrices

@pytest.mark.parametrize("code", sorted(COUNTER_STAINS))
def test_stain_matrix_rows_are_unit_vectors(code):
    matrix = stain_matrix(code)
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("code", sorted(COUNTER_STAINS))
def test_stain_matrix_residual_is_cross_product(code):
    matrix = stain_matrix(code)
    assert abs(matrix[2] @ matrix[0]) < 1e-12
    assert abs(matrix[2] @ matrix[1]) < 1e-12
    np.testing.assert_allclose(matrix[2], np.cross(matrix[0], matrix[1]) / np.linalg.norm(np.cross(matrix[0], matrix[1])))


def test_stain_matrix_haematoxylin_first():
    np.testing.assert_allclose(stain_matrix("16")[0], np.array(HAEMATOXYLIN) / np.linalg.norm(HAEMATOXYLIN))


def test_stain_matrix_cd34_reuses_sirius_red():
    np.testing.assert_array_equal(stain_matrix("39"), stain_matrix("32"))
    np.testing.assert_allclose(stain_matrix("39")[1], np.array(SIRIUS_RED) / np.linalg.norm(SIRIUS_RED))


@pytest.mark.parametrize("given, expected", [(2, "02"), ("02", "02"), (16, "16"), (" 39 ", "39")])
def test_stain_code_normalised(given, expected):
    assert normalise_stain_code(given) == expected


def test_stain_matrix_unknown_code_lists_known():
    with pytest.raises(ValueError, match=r"stain='99'.*02, 03, 16, 32, 39.*stain_matrix"):
        stain_matrix("99")


def test_custom_matrix_overrides_code():
    custom = [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11]]
    matrix = stain_matrix("02", custom)
    np.testing.assert_allclose(matrix[1], np.array(custom[1]) / np.linalg.norm(custom[1]))


def test_custom_matrix_parallel_vectors_rejected():
    with pytest.raises(ValueError, match="parallel"):
        matrix_from_vectors([[0.6, 0.7, 0.3], [1.2, 1.4, 0.6]])


def test_custom_matrix_bad_shape_rejected():
    with pytest.raises(ValueError, match=r"shape \[1, 3\]"):
        matrix_from_vectors([[0.6, 0.7, 0.3]])


# Deconvolution: known values

def test_pure_haematoxylin_recomposes_to_hand_computed_rgb():
    # OD = 0.1 x ln(1e6) x (0.6413, 0.7123, 0.2851) = (0.8860, 0.9841, 0.3939); RGB = exp(-OD).
    rgb = combine_stains(np.array([[[0.1, 0.0, 0.0]]]), PAS_MATRIX)
    np.testing.assert_allclose(rgb[0, 0], [0.41230, 0.37376, 0.67440], atol=1e-5)


def test_known_mixture_recovers_concentrations():
    # 0.05 haematoxylin + 0.02 PAS transmits exp(-ln(1e6) x (0.05 h + 0.02 p)).
    rgb = np.array([[[0.61179, 0.46733, 0.78678]]], dtype=np.float32)
    concentrations = separate_stains(rgb, PAS_MATRIX)
    np.testing.assert_allclose(concentrations[0, 0], [0.05, 0.02, 0.0], atol=2e-5)


def test_mixture_round_trip_gives_back_rgb():
    rng = np.random.default_rng(7)
    concentrations = rng.uniform(0.0, 0.2, size=(8, 8, 3)).astype(np.float32)
    # The residual vector has a negative component, so a positive residual would need
    # more light than white. Real mixtures are of the two stains only.
    concentrations[..., 2] = 0.0
    rgb = combine_stains(concentrations, PAS_MATRIX)
    np.testing.assert_allclose(separate_stains(rgb, PAS_MATRIX), concentrations, atol=1e-5)
    np.testing.assert_allclose(combine_stains(separate_stains(rgb, PAS_MATRIX), PAS_MATRIX), rgb, atol=1e-5)


def test_matches_scikit_image_on_ihc_image():
    ihc = data.immunohistochemistry()
    matrix = stain_matrix("16")
    expected = skimage_separate_stains(ihc, np.linalg.inv(matrix))
    np.testing.assert_allclose(separate_stains(ihc, matrix), expected, atol=1e-5)


def test_black_and_white_pixels_stay_finite():
    rgb = np.array([[[0, 0, 0], [255, 255, 255]]], dtype=np.uint8)
    concentrations = separate_stains(rgb, PAS_MATRIX)
    assert np.isfinite(concentrations).all()
    np.testing.assert_array_equal(concentrations[0, 1], [0.0, 0.0, 0.0])


def test_stain_intensity_of_zero_is_white():
    assert float(stain_intensity(np.float32(0.0))) == 1.0
    np.testing.assert_allclose(float(stain_intensity(np.float32(1.0 / LOG_SCALE))), np.exp(-1.0), rtol=1e-6)


# Deconvolution: input flavours

def test_uint8_and_float_inputs_agree():
    ihc = data.immunohistochemistry()[:64, :64]
    np.testing.assert_array_equal(separate_stains(ihc, PAS_MATRIX), separate_stains(ihc.astype(np.float32) / 255.0, PAS_MATRIX))


def test_float_0_255_converted_with_warning(caplog):
    ihc = data.immunohistochemistry()[:32, :32]
    with caplog.at_level(logging.WARNING):
        result = separate_stains(ihc.astype(np.float32), PAS_MATRIX, source="tile.png")
    assert "tile.png" in caplog.text
    np.testing.assert_allclose(result, separate_stains(ihc, PAS_MATRIX), atol=1e-6)


def test_float_above_255_rejected():
    with pytest.raises(ValueError, match=r"tile\.tif.*\[0, 1\] or \[0, 255\]"):
        as_float_rgb(np.full((4, 4, 3), 300.0), source="tile.tif")


def test_grey_image_rejected_naming_file():
    with pytest.raises(ValueError, match=r"grey\.png: the image is grey"):
        as_float_rgb(np.zeros((4, 4), dtype=np.uint8), source="grey.png")


def test_single_channel_image_rejected_naming_file():
    with pytest.raises(ValueError, match=r"grey\.png: the image is grey"):
        as_float_rgb(np.zeros((4, 4, 1), dtype=np.uint8), source="grey.png")


def test_rgba_blended_onto_white():
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., 3] = 0  # fully transparent black shows the white slide
    np.testing.assert_array_equal(as_float_rgb(rgba), np.ones((2, 2, 3), dtype=np.float32))


def test_grey_files_rejected_by_name(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "grey.png")
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "colour.png")
    Image.fromarray(np.zeros((8, 8, 4), dtype=np.uint8)).save(tmp_path / "rgba.png")
    with pytest.raises(ValueError, match=r"(?s)1 image\(s\) are grey.*grey\.png \(mode L\)") as raised:
        reject_grey_images(sorted(tmp_path.iterdir()))
    assert "colour.png" not in str(raised.value)
    assert "rgba.png" not in str(raised.value)


# Stain separation model

def test_model_matches_numpy_for_uint8_and_float():
    ihc = data.immunohistochemistry()[None, :64, :64]
    model = build_stain_separation(PAS_MATRIX, representation="concentration")
    expected = separate_stains(ihc[0], PAS_MATRIX)
    for batch in (ihc, ihc.astype(np.float32) / 255.0, ihc.astype(np.float32)):
        haematoxylin, counter_stain = model(batch)
        np.testing.assert_allclose(haematoxylin.numpy()[0, ..., 0], expected[..., 0], atol=1e-6)
        np.testing.assert_allclose(counter_stain.numpy()[0, ..., 0], expected[..., 1], atol=1e-6)


def test_model_reads_0_255_per_image():
    ihc = data.immunohistochemistry()[None, :16, :16].astype(np.float32)
    model = build_stain_separation(PAS_MATRIX)
    mixed = np.concatenate([ihc, ihc / 255.0])
    haematoxylin, _ = model(mixed)
    np.testing.assert_allclose(haematoxylin.numpy()[0], haematoxylin.numpy()[1], atol=1e-6)


def test_model_intensity_is_exp_of_optical_density():
    ihc = data.immunohistochemistry()[None, :16, :16]
    concentration = build_stain_separation(PAS_MATRIX, representation="concentration")(ihc)[0]
    intensity = build_stain_separation(PAS_MATRIX)(ihc)[0]
    np.testing.assert_allclose(intensity.numpy(), np.exp(-concentration.numpy() * LOG_SCALE), rtol=1e-5)


def test_model_has_no_weights():
    model = build_stain_separation(PAS_MATRIX)
    model.trainable = True
    assert model.weights == []


def test_model_rejects_bad_representation():
    with pytest.raises(ValueError, match="representation='od'"):
        build_stain_separation(PAS_MATRIX, representation="od")


def test_model_rejects_bad_matrix_shape():
    with pytest.raises(ValueError, match=r"shape \[2, 3\]"):
        build_stain_separation(PAS_MATRIX[:2])


def test_model_survives_keras_save_and_load(tmp_path):
    model = build_stain_separation(PAS_MATRIX)
    model.save(tmp_path / "stain_separation.keras")
    loaded = keras.saving.load_model(tmp_path / "stain_separation.keras")
    batch = data.immunohistochemistry()[None, :16, :16].astype(np.float32) / 255.0
    for expected, actual in zip(model(batch), loaded(batch)):
        np.testing.assert_array_equal(expected.numpy(), actual.numpy())


# Concentration perturbation

def test_perturbation_with_fixed_factors():
    concentrations = tf.constant([[[[0.1, 0.2]]]])
    perturbed = perturb_concentrations(concentrations, PerturbationConfig(alpha=(2.0, 2.0), beta=(0.05, 0.05)))
    np.testing.assert_allclose(perturbed.numpy()[0, 0, 0], [0.25, 0.45], atol=1e-7)


def test_perturbation_clips_at_zero():
    concentrations = tf.constant([[[[0.01, 0.2]]]])
    perturbed = perturb_concentrations(concentrations, PerturbationConfig(alpha=(1.0, 1.0), beta=(-0.05, -0.05)))
    np.testing.assert_allclose(perturbed.numpy()[0, 0, 0], [0.0, 0.15], atol=1e-7)


def test_perturbation_draws_per_patch_and_channel():
    concentrations = tf.fill([4, 2, 2, 2], 0.1)
    perturbed = perturb_concentrations(concentrations, PerturbationConfig(), seed=tf.constant([1, 2])).numpy()
    assert len(np.unique(perturbed[:, 0, 0, :])) == 8
    np.testing.assert_array_equal(perturbed[:, 0, 0, :], perturbed[:, 1, 1, :])


def test_perturbation_seed_repeats():
    concentrations = tf.fill([3, 2, 2, 2], 0.1)
    first = perturb_concentrations(concentrations, PerturbationConfig(), seed=tf.constant([5, 6]))
    second = perturb_concentrations(concentrations, PerturbationConfig(), seed=tf.constant([5, 6]))
    np.testing.assert_array_equal(first.numpy(), second.numpy())


def test_perturbation_config_rejects_reversed_range():
    with pytest.raises(ValueError, match=r"alpha=\[1.25, 0.75\]"):
        PerturbationConfig.from_config({"alpha": [1.25, 0.75]})
