"""SimCLR (Chen et al., 2020, arXiv:2002.05709) on the UNet contracting path.

The encoder's bottleneck is pooled globally and passed through the projection head
(Dense 512 - ReLU - Dense 128 in the study); NT-Xent with temperature 0.1 pulls the two
views of each patch together and pushes the other 2N - 2 views away.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from training.augmentations.views import view_pairs
from training.losses.contrastive import nt_xent
from training.methods import Method, register
from training.models.heads import mlp_head
from training.models.unet import build_encoder


class SimCLR(keras.Model):
    """Contrastive pre-training of ``encoder`` through a projection head."""

    def __init__(self, encoder: keras.Model, projection_head: keras.Model, temperature: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        if temperature <= 0:
            raise ValueError(f"temperature={temperature} must be positive (the study uses 0.1).")
        self.encoder = encoder
        self.pooling = keras.layers.GlobalAveragePooling2D(name="bottleneck_pooling")
        self.projection_head = projection_head
        self.temperature = temperature
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.Mean(name="contrastive_accuracy")

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_tracker]

    def call(self, images, training=False):
        bottleneck = self.encoder(images, training=training)[-1]
        return self.projection_head(self.pooling(bottleneck), training=training)

    def _loss(self, data, training: bool):
        view_1, view_2 = data
        # Under mixed precision the projections are float16, so they are cast for a float32 loss.
        projections_1 = tf.cast(self(view_1, training=training), tf.float32)
        projections_2 = tf.cast(self(view_2, training=training), tf.float32)
        return nt_xent(projections_1, projections_2, self.temperature)

    def train_step(self, data):
        # Forward both views and score them with NT-Xent.
        with tf.GradientTape() as tape:
            loss, accuracy = self._loss(data, training=True)
            # A LossScaleOptimizer (mixed float16) scales the loss up here and the
            # gradients back down. Other optimizers return the loss unchanged.
            scaled_loss = self.optimizer.scale_loss(loss)

        # Update the encoder and the projection head together.
        gradients = tape.gradient(scaled_loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))

        self.loss_tracker.update_state(loss)
        self.accuracy_tracker.update_state(accuracy)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        loss, accuracy = self._loss(data, training=False)
        self.loss_tracker.update_state(loss)
        self.accuracy_tracker.update_state(accuracy)
        return {m.name: m.result() for m in self.metrics}


def build_simclr(config: dict) -> SimCLR:
    model_config, method_config = config["model"], config["method"]
    encoder = build_encoder(model_config["depth"], model_config["filters"], model_config["padding"])
    head = method_config["projection_head"]
    projection_head = mlp_head(head["hidden_units"], head["output_units"], batch_norm=False, name="projection_head")
    return SimCLR(encoder, projection_head, temperature=float(method_config["temperature"]), name="simclr")


@register("simclr")
def simclr() -> Method:
    return Method("simclr", build_simclr, view_pairs)
