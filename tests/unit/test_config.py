"""Configuration layers: shipped defaults, overlays and single-key overrides."""

from __future__ import annotations

import pytest

from training.config import ConfigError, flatten, resolve


def test_study_defaults():
    config = resolve("simclr")
    assert config["model"] == {"depth": 5, "filters": 64, "padding": "valid"}
    assert config["data"]["patch_size"] == 508
    assert config["method"]["temperature"] == 0.1
    assert config["method"]["projection_head"] == {"hidden_units": 512, "output_units": 128}
    assert config["train"]["optimizer"] == "lars"


def test_small_overlay_and_overrides():
    config = resolve("segment", "small", {"train.epochs": "7", "data.patch_size": 64, "train.seed": ""})
    assert config["model"]["padding"] == "same"
    assert config["train"]["epochs"] == 7
    assert config["data"]["patch_size"] == 64
    assert config["train"]["seed"] == 42


def test_overlay_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("model:\n  filters: 3\n")
    assert resolve("segment", str(path))["model"]["filters"] == 3


def test_unknown_key_is_rejected():
    with pytest.raises(ConfigError, match="train.epoch'.*Keys at that level"):
        resolve("segment", None, {"train.epoch": 3})


def test_unknown_overlay_is_rejected():
    with pytest.raises(ConfigError, match="No shipped configuration named 'tiny'"):
        resolve("segment", "tiny")


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a.b": 1, "a.c.d": 2, "e": 3}
