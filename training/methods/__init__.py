"""Method registry: each self-supervised method is one module and one entry here.

A method assembles shared parts (encoder builder, heads, losses, augmentations) into
a ``keras.Model`` subclass with its own ``train_step``, driven by ``fit()``. The model
exposes the encoder to register as ``model.encoder``, which follows the encoder
contract of :mod:`training.models.unet`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import keras
import tensorflow as tf


class StageOrderError(ValueError):
    """A stage was requested before the stage it starts from has finished."""


@dataclass(frozen=True)
class Stage:
    """One training stage of a multi-stage method.

    ``build_model(config, previous)`` receives the trained model of the stage before
    (None for the first stage) and starts from its weights.
    """

    name: str
    build_model: Callable[[dict, keras.Model | None], keras.Model]
    make_inputs: Callable[[tf.data.Dataset, dict], tf.data.Dataset]


@dataclass(frozen=True)
class Method:
    """How to build a method's model and turn batches of uint8 crops into its inputs.

    A single-stage method uses ``build_model`` and ``make_inputs``. A multi-stage
    method also lists its ``stages`` in training order. Its ``build_model`` and
    ``make_inputs`` are those of the first stage, and the encoder to register is the
    last stage's. ``encoder_tags(config)`` gives extra tags for the registered encoder.
    """

    name: str
    build_model: Callable[[dict], keras.Model]
    make_inputs: Callable[[tf.data.Dataset, dict], tf.data.Dataset]
    stages: tuple[Stage, ...] = ()
    encoder_tags: Callable[[dict], dict[str, str]] | None = None

    @property
    def stage_names(self) -> list[str]:
        return [stage.name for stage in self.stages]

    def get_stage(self, name: str) -> Stage:
        """Return the stage ``name``; raise ValueError naming this method's stages."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        choices = ", ".join(self.stage_names) or "none (it trains in one stage)"
        raise ValueError(f"stage={name!r} is not a stage of {self.name}. Its stages, in order: {choices}.")


def stage_config(config: dict, stage: str) -> dict:
    """Return ``config`` with ``stages.<stage>`` merged over its ``train`` section.

    Each stage of a multi-stage method may override training keys such as ``epochs``
    or ``learning_rate``; the keys it leaves out keep the ``train`` values.
    """
    from training.config import merge

    overrides = (config.get("stages") or {}).get(stage) or {}
    if not isinstance(overrides, dict):
        raise ValueError(f"stages.{stage} must be a mapping of train keys, got {overrides!r}.")
    return {**config, "train": merge(config["train"], overrides)}


def require_previous_stage(stage: str, previous_stage: str, previous_model: keras.Model | None) -> keras.Model:
    """Return ``previous_model``, or raise StageOrderError when stage ``previous_stage`` has not run."""
    if previous_model is None:
        raise StageOrderError(
            f"Stage {stage!r} starts from the weights that stage {previous_stage!r} trained, and none were given. "
            f"Run stage {previous_stage!r} first."
        )
    return previous_model


_REGISTRY: dict[str, Callable[[], Method]] = {}


def register(name: str):
    """Decorator that adds a method factory to the registry under ``name``."""

    def decorator(factory: Callable[[], Method]):
        _REGISTRY[name] = factory
        return factory

    return decorator


def available() -> list[str]:
    _import_builtin_methods()
    return sorted(_REGISTRY)


def get_method(name: str) -> Method:
    """Return the registered method ``name``; raise ValueError naming the choices."""
    _import_builtin_methods()
    if name not in _REGISTRY:
        raise ValueError(f"Unknown method {name!r}. Available methods: {', '.join(sorted(_REGISTRY))}.")
    return _REGISTRY[name]()


def _import_builtin_methods() -> None:
    # Importing a method module registers it.
    from training.methods import byol, hrcsco, simclr  # noqa: F401
