"""Hyperparameter search spaces read from YAML and turned into Optuna suggestions.

A search space file has up to four sections::

    objective: {metric: val_f1, direction: maximize}
    sampler: {type: tpe, seed: 42}
    pruner: {type: median, n_startup_trials: 2, n_warmup_steps: 1}
    params:
      train.learning_rate: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      train.batch_size: {type: categorical, choices: [4, 8, 16]}

Each name under ``params`` is a dotted configuration key that a trial overrides, as
in ``configuration.resolve``. Shipped search spaces live beside the configurations
as ``training/configs/search_space_<target>.yaml``.
"""

from __future__ import annotations

import copy
import math
import zlib
from dataclasses import dataclass, field
from typing import Any, Mapping

import optuna
import yaml

from training.config import ConfigError, load_overlay, set_key

# Default objective per tuned entry point: the metric each trial reports per epoch.
DEFAULT_OBJECTIVES = {"segment": ("val_f1", "maximize"), "pretrain": ("val_loss", "minimize")}

SAMPLERS = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}
PRUNERS = {
    "median": optuna.pruners.MedianPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "threshold": optuna.pruners.ThresholdPruner,
    "none": optuna.pruners.NopPruner,
}
_SPEC_KEYS = {
    "float": {"type", "low", "high", "log", "step"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}
_SECTIONS = {"objective", "sampler", "pruner", "params"}


@dataclass(frozen=True)
class Objective:
    """The per-epoch metric a search optimises and in which direction."""

    metric: str
    direction: str

    @property
    def mode(self) -> str:
        """``max`` or ``min``, as Keras callbacks name the direction."""
        return "max" if self.direction == "maximize" else "min"

    def is_better(self, value: float, reference: float | None) -> bool:
        """Return True when ``value`` beats ``reference`` (None: nothing to beat yet)."""
        if not math.isfinite(value):
            return False
        if reference is None:
            return True
        return value > reference if self.direction == "maximize" else value < reference


@dataclass
class SearchSpace:
    """Parameters to sample, the objective, and the sampler and pruner settings."""

    source: str
    objective: Objective
    params: dict[str, optuna.distributions.BaseDistribution]
    sampler: dict = field(default_factory=dict)
    pruner: dict = field(default_factory=dict)

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample every parameter for ``trial`` and return ``{dotted key: value}``."""
        values = {}
        for name, distribution in self.params.items():
            if isinstance(distribution, optuna.distributions.FloatDistribution):
                values[name] = trial.suggest_float(name, distribution.low, distribution.high, step=distribution.step, log=distribution.log)
            elif isinstance(distribution, optuna.distributions.IntDistribution):
                values[name] = trial.suggest_int(name, distribution.low, distribution.high, step=distribution.step, log=distribution.log)
            else:
                values[name] = trial.suggest_categorical(name, distribution.choices)
        return values

    def check_keys(self, config: Mapping) -> None:
        """Raise ConfigError unless every parameter names an existing key of ``config``."""
        scratch = copy.deepcopy(dict(config))
        for name, distribution in self.params.items():
            sample = distribution.choices[0] if isinstance(distribution, optuna.distributions.CategoricalDistribution) else distribution.low
            try:
                set_key(scratch, name, sample)
            except ConfigError as error:
                raise ConfigError(f"Search space {self.source}: parameter {name!r} is not a configuration key. {error}") from None

    def build_sampler(self, worker_key: str | None = None) -> optuna.samplers.BaseSampler:
        """Build the sampler named by ``sampler.type`` (default ``tpe``).

        ``worker_key`` mixes a worker's identity into ``sampler.seed``, so workers that
        join one study do not draw the same random start-up trials.
        """
        settings = dict(self.sampler)
        kind = str(settings.pop("type", "tpe")).lower()
        seed = settings.get("seed")
        if seed is not None and worker_key is not None:
            settings["seed"] = (int(seed) + zlib.crc32(worker_key.encode())) % 2**32
        return _build(SAMPLERS, kind, settings, f"{self.source}: sampler")

    def build_pruner(self) -> optuna.pruners.BasePruner:
        """Build the pruner named by ``pruner.type`` (default ``median``)."""
        settings = dict(self.pruner)
        kind = str(settings.pop("type", "median")).lower()
        return _build(PRUNERS, kind, settings, f"{self.source}: pruner")

    def to_yaml(self) -> str:
        """Return the search space as YAML, in the file format it was read from."""
        params = {name: _distribution_to_spec(distribution) for name, distribution in self.params.items()}
        content = {
            "objective": {"metric": self.objective.metric, "direction": self.objective.direction},
            "sampler": dict(self.sampler),
            "pruner": dict(self.pruner),
            "params": params,
        }
        return yaml.safe_dump(content, sort_keys=False)


def _build(registry: dict, kind: str, settings: dict, where: str):
    if kind not in registry:
        raise ConfigError(f"{where} type {kind!r} is not supported. Choose one of {', '.join(sorted(registry))}.")
    try:
        return registry[kind](**settings)
    except TypeError as error:
        raise ConfigError(f"{where} settings {settings} are invalid for {kind}: {error}.") from None


def _distribution_to_spec(distribution) -> dict:
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return {"type": "categorical", "choices": list(distribution.choices)}
    kind = "float" if isinstance(distribution, optuna.distributions.FloatDistribution) else "int"
    spec = {"type": kind, "low": distribution.low, "high": distribution.high, "log": distribution.log}
    if distribution.step is not None:
        spec["step"] = distribution.step
    return spec


def parse_param(name: str, spec: Any, source: str) -> optuna.distributions.BaseDistribution:
    """Turn one ``params`` entry into an Optuna distribution, or raise ConfigError naming the fix."""
    where = f"Search space {source}: parameter {name!r}"
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise ConfigError(f"{where} must be a mapping with a type (float, int or categorical), found {spec!r}.")
    kind = str(spec["type"]).lower()
    if kind not in _SPEC_KEYS:
        raise ConfigError(f"{where} has the invalid type {spec['type']!r}. Use float, int or categorical.")
    unknown = set(spec) - _SPEC_KEYS[kind]
    if unknown:
        raise ConfigError(f"{where} has unknown keys {sorted(unknown)}. A {kind} parameter takes {sorted(_SPEC_KEYS[kind])}.")

    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where} needs a non-empty list of choices, found {choices!r}.")
        for choice in choices:
            if choice is not None and not isinstance(choice, (bool, int, float, str)):
                raise ConfigError(f"{where} choice {choice!r} is invalid: choices must be numbers, strings, booleans or null.")
        return optuna.distributions.CategoricalDistribution(choices)

    if "low" not in spec or "high" not in spec:
        raise ConfigError(f"{where} needs both low and high.")
    number = float if kind == "float" else int
    try:
        low, high = number(spec["low"]), number(spec["high"])
        step = None if spec.get("step") is None else number(spec["step"])
    except (TypeError, ValueError):
        raise ConfigError(f"{where} has low={spec['low']!r}, high={spec['high']!r}: they must be {kind} numbers.") from None
    log = bool(spec.get("log", False))
    if low > high:
        raise ConfigError(f"{where} has low={low} above high={high}. Swap them.")
    if log and low <= 0:
        raise ConfigError(f"{where} has log: true with low={low}, but a log scale needs low > 0.")
    if log and step is not None:
        raise ConfigError(f"{where} sets both log and step; Optuna samples a log scale without steps, so drop one.")
    if step is not None and step <= 0:
        raise ConfigError(f"{where} has step={step}, but the step must be positive.")
    if kind == "float":
        return optuna.distributions.FloatDistribution(low, high, log=log, step=step)
    return optuna.distributions.IntDistribution(low, high, log=log, step=step or 1)


def parse_search_space(content: Mapping, target: str, source: str) -> SearchSpace:
    """Validate the content of a search space file for the entry point ``target``."""
    unknown = set(content) - _SECTIONS
    if unknown:
        raise ConfigError(f"Search space {source} has unknown sections {sorted(unknown)}. Use {', '.join(sorted(_SECTIONS))}.")
    params = content.get("params") or {}
    if not isinstance(params, Mapping) or not params:
        raise ConfigError(f"Search space {source} has no params: list at least one dotted configuration key under params.")

    metric, direction = DEFAULT_OBJECTIVES.get(target, (None, None))
    objective_spec = content.get("objective") or {}
    metric = str(objective_spec.get("metric", metric or ""))
    direction = str(objective_spec.get("direction", direction or "")).lower()
    if not metric:
        raise ConfigError(f"Search space {source} names no objective metric: set objective.metric, for example val_loss.")
    if direction not in ("maximize", "minimize"):
        raise ConfigError(f"Search space {source} has objective.direction={direction!r}. Use maximize or minimize.")

    for section in ("sampler", "pruner"):
        if not isinstance(content.get(section) or {}, Mapping):
            raise ConfigError(f"Search space {source}: {section} must be a mapping such as {{type: ...}}.")
    space = SearchSpace(
        source=source,
        objective=Objective(metric, direction),
        params={str(name): parse_param(str(name), spec, source) for name, spec in params.items()},
        sampler=dict(content.get("sampler") or {}),
        pruner=dict(content.get("pruner") or {}),
    )
    # Building both once reports a wrong type or setting before any trial starts.
    space.build_sampler()
    space.build_pruner()
    return space


def load_search_space(reference: str | None, target: str) -> SearchSpace:
    """Load a search space by shipped name or file path, by default ``search_space_<target>``."""
    reference = (reference or "").strip() or f"search_space_{target}"
    return parse_search_space(load_overlay(reference), target, reference)
