"""MLP heads for self-supervised methods."""

from __future__ import annotations

import keras
from keras import layers


def mlp_head(hidden_units: int, output_units: int, batch_norm: bool = False, name: str = "head") -> keras.Sequential:
    """Dense - [batch norm] - ReLU - Dense.

    SimCLR's projection head (Chen et al., 2020, arXiv:2002.05709) is 512-ReLU-128 in
    the study, without batch norm; BYOL's projection and prediction heads (Grill et
    al., 2020, arXiv:2006.07733) are 2048-BN-ReLU-256.
    """
    stack = [layers.Dense(hidden_units, use_bias=not batch_norm, name=f"{name}_dense1")]
    if batch_norm:
        stack.append(layers.BatchNormalization(name=f"{name}_bn"))
    stack += [layers.ReLU(name=f"{name}_relu"), layers.Dense(output_units, name=f"{name}_dense2")]
    return keras.Sequential(stack, name=name)
