"""Search spaces: shipped defaults, parsing and the errors for bad entries."""

from __future__ import annotations

import optuna
import pytest

from tracking.search_space import Objective, load_search_space, parse_search_space
from training import config as configuration
from training.config import ConfigError


@pytest.mark.parametrize(("target", "task", "metric", "direction"), [
    ("segment", "segment", "val_f1", "maximize"),
    ("pretrain", "simclr", "val_loss", "minimize"),
])
def test_shipped_search_space_fits_config(target, task, metric, direction):
    space = load_search_space("", target)
    assert space.objective == Objective(metric, direction)
    assert space.params
    space.check_keys(configuration.resolve(task, "small"))
    assert isinstance(space.build_sampler(), optuna.samplers.TPESampler)
    assert isinstance(space.build_pruner(), optuna.pruners.MedianPruner)


def test_suggest_returns_dotted_keys():
    space = parse_search_space({"params": {
        "train.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "train.batch_size": {"type": "categorical", "choices": [4, 8]},
        "model.filters": {"type": "int", "low": 4, "high": 16, "step": 4},
    }}, "segment", "inline")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    values = space.suggest(study.ask())
    assert set(values) == {"train.learning_rate", "train.batch_size", "model.filters"}
    assert 1e-4 <= values["train.learning_rate"] <= 1e-2
    assert values["train.batch_size"] in (4, 8)
    assert values["model.filters"] in (4, 8, 12, 16)
    config = configuration.resolve("segment", "small", values)
    assert config["train"]["batch_size"] == values["train.batch_size"]


def test_to_yaml_round_trips():
    content = {
        "objective": {"metric": "val_loss", "direction": "minimize"},
        "pruner": {"type": "none"},
        "params": {"train.learning_rate": {"type": "float", "low": 0.001, "high": 0.1, "log": True}},
    }
    space = parse_search_space(content, "segment", "inline")
    import yaml

    again = parse_search_space(yaml.safe_load(space.to_yaml()), "segment", "again")
    assert again.params == space.params
    assert again.objective == space.objective


def test_worker_key_changes_sampler_seed():
    space = parse_search_space({"sampler": {"type": "random", "seed": 1}, "params": {"x.y": {"type": "float", "low": 0, "high": 1}}}, "segment", "inline")
    draws = []
    for key in (None, None, "worker-b"):
        study = optuna.create_study(sampler=space.build_sampler(key))
        draws.append(study.ask().suggest_float("x.y", 0, 1))
    assert draws[0] == draws[1]
    assert draws[0] != draws[2]


@pytest.mark.parametrize(("content", "message"), [
    ({"params": {}}, "no params"),
    ({"params": {"train.learning_rate": {"low": 1, "high": 2}}}, "must be a mapping with a type"),
    ({"params": {"train.learning_rate": {"type": "normal", "low": 1, "high": 2}}}, "Use float, int or categorical"),
    ({"params": {"train.learning_rate": {"type": "float", "low": 2, "high": 1}}}, "above high"),
    ({"params": {"train.learning_rate": {"type": "float", "low": 0, "high": 1, "log": True}}}, "needs low > 0"),
    ({"params": {"train.learning_rate": {"type": "float", "low": 0.1, "high": 1, "log": True, "step": 0.1}}}, "drop one"),
    ({"params": {"train.learning_rate": {"type": "float", "low": 0.1, "hgih": 1}}}, "unknown keys"),
    ({"params": {"train.batch_size": {"type": "categorical", "choices": []}}}, "non-empty list"),
    ({"params": {"augment.crop_scale": {"type": "categorical", "choices": [[0.1, 1.0]]}}}, "choices must be numbers"),
    ({"objective": {"direction": "up"}, "params": {"a.b": {"type": "int", "low": 1, "high": 2}}}, "Use maximize or minimize"),
    ({"sampler": {"type": "grid"}, "params": {"a.b": {"type": "int", "low": 1, "high": 2}}}, "sampler type 'grid' is not supported"),
    ({"pruner": {"type": "median", "patience": 3}, "params": {"a.b": {"type": "int", "low": 1, "high": 2}}}, "settings"),
    ({"parameters": {}}, "unknown sections"),
])
def test_invalid_search_space_rejected(content, message):
    with pytest.raises(ConfigError, match=message):
        parse_search_space(content, "segment", "inline")


def test_unknown_config_key_rejected():
    space = parse_search_space({"params": {"train.learnig_rate": {"type": "float", "low": 0.1, "high": 1}}}, "segment", "inline")
    with pytest.raises(ConfigError, match="'train.learnig_rate' is not a configuration key"):
        space.check_keys(configuration.resolve("segment", "small"))


def test_missing_objective_for_unknown_target():
    with pytest.raises(ConfigError, match="names no objective metric"):
        parse_search_space({"params": {"a.b": {"type": "int", "low": 1, "high": 2}}}, "udagan", "inline")
