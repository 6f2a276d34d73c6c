"""Pairing images with masks by stem, and rejecting datasets that cannot be paired."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from training.data.labelled import DatasetError, discover_labelled, group_of, load_labelled


def _write_pair(root, name, image, mask, stain=None, image_suffix=".png"):
    images = root / "images" / (stain or "")
    masks = root / "masks" / (stain or "")
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(images / f"{name}{image_suffix}")
    Image.fromarray(mask).save(masks / f"{name}.png")


@pytest.fixture
def tile(ihc_image):
    return ihc_image[:32, :32].copy()


def test_pairs_by_stem_not_by_order(tmp_path, tile):
    # Masks whose sort order differs from the images' (z-first vs a-first names).
    empty = np.zeros((32, 32), np.uint8)
    full = np.full((32, 32), 255, np.uint8)
    _write_pair(tmp_path, "b-full", tile, full)
    _write_pair(tmp_path, "a-empty", tile, empty, image_suffix=".jpg")
    pairs = {p.name: p for p in discover_labelled(tmp_path)}
    assert pairs["b-full"].mask_path.name == "b-full.png"
    assert pairs["a-empty"].image_path.suffix == ".jpg"
    loaded = {p.item.name: p for p in load_labelled(list(pairs.values()), progress=False)}
    assert loaded["b-full"].mask.all()
    assert not loaded["a-empty"].mask.any()


def test_stain_folders_give_stains(tmp_path, tile):
    mask = np.zeros((32, 32), np.uint8)
    _write_pair(tmp_path, "x1", tile, mask, stain="pas")
    _write_pair(tmp_path, "x1", tile, mask, stain="masson")
    pairs = discover_labelled(tmp_path)
    assert sorted(p.stain for p in pairs) == ["masson", "pas"]


def test_flat_layout_uses_flat_stain(tmp_path, tile):
    _write_pair(tmp_path, "x1", tile, np.zeros((32, 32), np.uint8))
    assert discover_labelled(tmp_path, flat_stain="pas")[0].stain == "pas"


def test_image_without_mask_is_named(tmp_path, tile):
    _write_pair(tmp_path, "x1", tile, np.zeros((32, 32), np.uint8))
    Image.fromarray(tile).save(tmp_path / "images" / "orphan.png")
    with pytest.raises(DatasetError, match=r"orphan\.png has no mask.*masks/orphan\.png"):
        discover_labelled(tmp_path)


def test_duplicate_stem_is_rejected(tmp_path, tile):
    _write_pair(tmp_path, "x1", tile, np.zeros((32, 32), np.uint8))
    Image.fromarray(tile).save(tmp_path / "images" / "x1.jpg")
    with pytest.raises(DatasetError, match="share the stem 'x1'"):
        discover_labelled(tmp_path)


def test_mixed_layout_is_rejected(tmp_path, tile):
    mask = np.zeros((32, 32), np.uint8)
    _write_pair(tmp_path, "x1", tile, mask)
    _write_pair(tmp_path, "x2", tile, mask, stain="pas")
    with pytest.raises(DatasetError, match="Use one layout"):
        discover_labelled(tmp_path)


def test_missing_masks_folder_is_rejected(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetError, match="no masks/ folder"):
        discover_labelled(tmp_path)


def test_mask_size_mismatch_is_rejected(tmp_path, tile):
    _write_pair(tmp_path, "x1", tile, np.zeros((16, 32), np.uint8))
    with pytest.raises(DatasetError, match="x1.png: the mask is 32x16 pixels"):
        load_labelled(discover_labelled(tmp_path), progress=False)


def test_every_bad_file_is_listed(tmp_path, tile):
    bad = np.zeros((32, 32), np.uint8)
    bad[0, 0] = 7
    bad[0, 1] = 9
    _write_pair(tmp_path, "x1", tile, bad)
    _write_pair(tmp_path, "x2", tile, bad)
    with pytest.raises(DatasetError, match=r"2 labelled file\(s\)") as error:
        load_labelled(discover_labelled(tmp_path), progress=False)
    assert "x1.png" in str(error.value)
    assert "x2.png" in str(error.value)


@pytest.mark.parametrize(
    "name,expected",
    [("20181462-PAS-0400-2", "20181462"), ("K20173336-PASM0002", "K20173336"), ("10003", "10003"), ("ihc01", "ihc01")],
)
def test_group_from_file_name(name, expected):
    assert group_of(name, r"^([A-Za-z]*\d+)") == expected


def test_real_bupt_pairs(bupt):
    pairs = discover_labelled(bupt)
    counts = {stain: sum(p.stain == stain for p in pairs) for stain in ("pas", "pasm", "masson")}
    assert counts == {"pas": 17, "pasm": 34, "masson": 39}
    assert all(p.image_path.stem == p.mask_path.stem for p in pairs)
