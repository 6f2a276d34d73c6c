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


@dataclass(frozen=True)
class Method:
    """How to build a method's model and turn batches of uint8 crops into its inputs."""

    name: str
    build_model: Callable[[dict], keras.Model]
    make_inputs: Callable[[tf.data.Dataset, dict], tf.data.Dataset]


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
    from training.methods import byol, simclr  # noqa: F401
