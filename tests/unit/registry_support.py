"""Helpers for registry tests: tiny encoders built by the real method builders, logged and registered."""

from __future__ import annotations

import mlflow
import numpy as np

from registry.encoders import register_encoder
from tests.e2e.conftest import TINY_CONFIG
from tracking.models import encoder_signature, log_keras_model
from training import config as configuration
from training.methods import get_method

# A fixed input batch: 2 RGB patches of 64 px with values spread over [0, 1].
PROBE = np.linspace(0, 1, 2 * 64 * 64 * 3, dtype="float32").reshape(2, 64, 64, 3)


def build_tiny_encoder(method: str = "simclr", seed: int = 0):
    """Build a method's encoder at the tiny test size, seeded, returning (encoder, config)."""
    import keras

    config = configuration.resolve(method, str(TINY_CONFIG))
    keras.utils.set_random_seed(seed)
    return get_method(method).build_model(config).encoder, config


def register_tiny_encoder(method: str = "simclr", seed: int = 0, name: str | None = None, claim_champion: bool = True):
    """Log and register one tiny encoder in its own run, returning (version, encoder)."""
    encoder, config = build_tiny_encoder(method, seed)
    with mlflow.start_run(run_name=f"tiny {method} {seed}"):
        info = log_keras_model(encoder, "encoder", encoder_signature(encoder))
        version = register_encoder(
            info, method=method, stains="02", dataset_digest="0123456789abcdef", config=config,
            name=name, claim_champion=claim_champion,
        )
    return version, encoder


def bottleneck(encoder, batch=PROBE) -> np.ndarray:
    """Return the encoder's last feature map for ``batch``."""
    return np.asarray(encoder.predict(batch, verbose=0)[-1])
