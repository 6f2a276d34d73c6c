"""BYOL (Grill et al., 2020, arXiv:2006.07733) on the UNet contracting path.

The online network (encoder, projection head, prediction head) predicts the target
network's projection of the other view of the same patch. The target network
(``target_encoder`` and ``target_projection_head``) receives no gradients: after each
step it moves towards the online network as an exponential moving average whose
momentum rises from 0.99 to 1 along one cosine over all training steps of the run.
Heads are Dense 2048 - batch norm - ReLU - Dense 256; the loss is ``2 - 2 cos`` on
normalised outputs, symmetrised over the two views. The online encoder is the one to
register.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from training.augmentations.views import view_pairs
from training.losses.distillation import byol_loss
from training.methods import Method, register
from training.models.heads import mlp_head
from training.models.unet import build_encoder
from training.optimization import cosine_momentum, ema_update


def copy_network(network: keras.Model, build, name: str) -> keras.Model:
    """Build a fresh network with ``build(name)`` and copy ``network``'s weights into it."""
    copy = build(name)
    if len(copy.weights) != len(network.weights):
        raise ValueError(f"{name} has {len(copy.weights)} weights and {network.name} {len(network.weights)}; they must match.")
    copy.set_weights(network.get_weights())
    return copy


class BYOL(keras.Model):
    """Bootstrap Your Own Latent: an online network regresses an EMA target network.

    ``encoder`` maps a view to a list of feature maps whose last (the bottleneck) is
    pooled globally. ``total_steps`` is the length of the whole run, over which the
    momentum follows its cosine once. Subclasses change the views through
    :meth:`prepare_views` and add loss terms through :meth:`compute_losses`.
    """

    def __init__(
        self,
        encoder: keras.Model,
        projection_head: keras.Model,
        prediction_head: keras.Model,
        target_encoder: keras.Model,
        target_projection_head: keras.Model,
        momentum: float = 0.99,
        total_steps: int = 1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not 0 <= momentum <= 1:
            raise ValueError(f"momentum={momentum} must lie in [0, 1] (BYOL uses 0.99).")
        if total_steps < 1:
            raise ValueError(f"total_steps={total_steps} must be at least 1 (train.epochs x train.steps_per_epoch).")
        self.encoder = encoder
        self.projection_head = projection_head
        self.prediction_head = prediction_head
        self.target_encoder = target_encoder
        self.target_projection_head = target_projection_head
        self.pooling = keras.layers.GlobalAveragePooling2D(name="bottleneck_pooling")
        self.momentum = momentum
        self.total_steps = total_steps
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.momentum_tracker = keras.metrics.Mean(name="momentum")
        # Every part arrives with its weights created, so weights load without a first call.
        self.built = True

    @property
    def online_networks(self) -> list[keras.Model]:
        return [self.encoder, self.projection_head, self.prediction_head]

    @property
    def online_variables(self) -> list:
        return [v for network in self.online_networks for v in network.trainable_variables]

    @property
    def metrics(self):
        return [self.loss_tracker, self.momentum_tracker]

    def call(self, views, training=False):
        """Return the online network's predictions for a batch of views."""
        return self.prediction_head(self.online_projection(views, training), training=training)

    def online_projection(self, views, training):
        bottleneck = self.encoder(views, training=training)[-1]
        return self.projection_head(self.pooling(bottleneck), training=training)

    def target_projection(self, views, training):
        bottleneck = self.target_encoder(views, training=training)[-1]
        return tf.stop_gradient(self.target_projection_head(self.pooling(bottleneck), training=training))

    def prepare_views(self, data, training: bool):
        """Return the two views that the networks see; BYOL takes them as they come."""
        view_1, view_2 = data
        return view_1, view_2

    def compute_losses(self, view_1, view_2, training: bool) -> dict:
        """Return the named loss terms; ``loss`` is the one to minimise."""
        predictions_1 = self(view_1, training=training)
        predictions_2 = self(view_2, training=training)
        # The target network runs in training mode too, so its batch norm uses batch statistics.
        targets_1 = self.target_projection(view_1, training)
        targets_2 = self.target_projection(view_2, training)
        return {"loss": byol_loss(predictions_1, targets_1, predictions_2, targets_2)}

    def update_target(self, step) -> tf.Tensor:
        """Move the target network towards the online network; return the momentum used."""
        # NOTE: the study's published code restarted the momentum schedule every epoch.
        # Here ``step`` counts optimizer steps over the whole run, so it never restarts.
        momentum = cosine_momentum(step, self.total_steps, self.momentum)
        ema_update(self.target_encoder.trainable_variables, self.encoder.trainable_variables, momentum)
        ema_update(self.target_projection_head.trainable_variables, self.projection_head.trainable_variables, momentum)
        return momentum

    def _record(self, losses: dict, momentum=None) -> dict:
        """Update the trackers of the given loss terms (and momentum); return their running means."""
        recorded = [tracker for tracker in self.metrics if tracker.name in losses]
        for tracker in recorded:
            tracker.update_state(losses[tracker.name])
        if momentum is not None:
            self.momentum_tracker.update_state(momentum)
            recorded.append(self.momentum_tracker)
        return {tracker.name: tracker.result() for tracker in recorded}

    def train_step(self, data):
        view_1, view_2 = self.prepare_views(data, training=True)
        # The step count before this update sets the momentum (0.99 at the first step).
        step = tf.identity(self.optimizer.iterations)

        # Online predictions of each view regress the target projections of the other.
        with tf.GradientTape() as tape:
            losses = self.compute_losses(view_1, view_2, training=True)

        # Only the online network learns by gradient.
        online_variables = self.online_variables
        gradients = tape.gradient(losses["loss"], online_variables)
        self.optimizer.apply_gradients(zip(gradients, online_variables))

        # The target network follows as a moving average, with the momentum of this step.
        momentum = self.update_target(step)
        return self._record(losses, momentum)

    def test_step(self, data):
        view_1, view_2 = self.prepare_views(data, training=False)
        losses = self.compute_losses(view_1, view_2, training=False)
        return self._record(losses)


def build_head(section: dict, name: str, input_units: int) -> keras.Model:
    """Build one BYOL head (Dense - batch norm - ReLU - Dense) with its weights created."""
    head = mlp_head(int(section["hidden_units"]), int(section["output_units"]), batch_norm=True, name=name)
    head.build((None, input_units))
    return head


def total_training_steps(train: dict) -> int:
    return int(train["epochs"]) * int(train["steps_per_epoch"])


def build_byol(config: dict) -> BYOL:
    model_config, method_config = config["model"], config["method"]

    def build_unet_encoder(name):
        return build_encoder(model_config["depth"], model_config["filters"], model_config["padding"], name=name)

    def build_projection_head(name):
        return build_head(method_config["projection_head"], name, encoder.outputs[-1].shape[-1])

    encoder = build_unet_encoder("unet_encoder")
    projection_head = build_projection_head("projection_head")
    prediction_head = build_head(method_config["prediction_head"], "prediction_head", int(method_config["projection_head"]["output_units"]))
    return BYOL(
        encoder,
        projection_head,
        prediction_head,
        target_encoder=copy_network(encoder, build_unet_encoder, "target_encoder"),
        target_projection_head=copy_network(projection_head, build_projection_head, "target_projection_head"),
        momentum=float(method_config["momentum"]),
        total_steps=total_training_steps(config["train"]),
        name="byol",
    )


@register("byol")
def byol() -> Method:
    # NOTE: BYOL's paper makes the two views asymmetric, with blur probabilities 1.0
    # and 0.1 and solarisation probabilities 0 and 0.2. The study's BYOL recipe is not
    # restated here, so both views share the SimCLR recipe of the `augment` section.
    return Method("byol", build_byol, view_pairs)
