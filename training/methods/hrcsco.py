"""HR-CS-CO: cross-stain prediction, then contrastive learning, per stain.

CS-CO (Yang et al., 2022, github.com/easonyang1996/CS-CO) adapted to UNet encoders
for high-resolution kidney patches. Ruifrok-Johnston colour deconvolution with a fixed
stain matrix per stain code splits a patch into haematoxylin (H) and counter-stain (O)
intensity images, and each has its own UNet encoder.

1. ``cross_stain``: two encoder-decoders predict O from H and H from O (MSE).
2. ``contrastive``: the stage-1 encoders keep training with a BYOL objective between
   two views whose stain concentrations are perturbed, plus ``cross_stain_weight`` (20)
   times the stage-1 losses through the frozen stage-1 decoders.

The registered encoder takes RGB, deconvolves it inside the model and concatenates the
H and O features at every level, so it follows the encoder contract of
:mod:`training.models.unet`.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from training.augmentations.views import ViewConfig, random_flips, random_view
from training.losses.distillation import byol_loss
from training.methods import Method, Stage, register, require_previous_stage
from training.methods.byol import BYOL, build_head, copy_network, total_training_steps
from training.models.unet import build_decoder, build_encoder
from training.stain.deconvolution import build_stain_separation, concentrations_to_rgb, rgb_to_concentrations
from training.stain.matrices import counter_stain_name, normalise_stain_code, stain_matrix
from training.stain.perturbation import PerturbationConfig, perturb_concentrations

CROSS_STAIN, CONTRASTIVE = "cross_stain", "contrastive"
STAIN_SEPARATION = "stain_separation"


def stain_settings(method_config: dict) -> tuple[str, np.ndarray]:
    """Return the stain code and the 3x3 stain matrix that ``method`` selects."""
    code = normalise_stain_code(method_config.get("stain"))
    return code, stain_matrix(code, method_config.get("stain_matrix") or None)


def build_stain_encoder(rgb_from_stains: np.ndarray, h_encoder: keras.Model, o_encoder: keras.Model, name: str = "hrcsco_encoder") -> keras.Model:
    """Join the H and O paths into one encoder under the encoder contract.

    RGB in [0, 1] goes through colour deconvolution; level ``i`` of the output is the
    H path's level ``i`` features concatenated with the O path's.
    """
    rgb = keras.Input(shape=(None, None, 3), name="rgb")
    haematoxylin, counter_stain = build_stain_separation(rgb_from_stains, name=STAIN_SEPARATION)(rgb)
    h_features = h_encoder(haematoxylin)
    o_features = o_encoder(counter_stain)
    features = [
        layers.Concatenate(name=f"stains_level{level + 1}")([h, o]) for level, (h, o) in enumerate(zip(h_features, o_features))
    ]
    return keras.Model(rgb, features, name=name)


def _centre_crop_like(target: tf.Tensor, prediction: tf.Tensor) -> tf.Tensor:
    """Crop ``target`` to the (smaller, valid-padding) spatial size of ``prediction``."""
    size = tf.shape(prediction)[1]
    margin = (tf.shape(target)[1] - size) // 2
    return target[:, margin : margin + size, margin : margin + size, :]


class CrossStainParts:
    """The stain paths shared by both stages: deconvolution, two encoders, two decoders.

    A mixin for ``keras.Model`` subclasses that set ``encoder`` (the joined RGB
    encoder), ``h_encoder``, ``o_encoder``, ``h_to_o_decoder`` and ``o_to_h_decoder``.
    """

    def separate(self, rgb):
        """Return the H and O intensity images of an RGB batch."""
        return self.encoder.get_layer(STAIN_SEPARATION)(rgb)

    def cross_stain(self, haematoxylin, counter_stain, training: bool) -> dict:
        """Run both paths; return features, predictions and the two MSE terms."""
        h_features = self.h_encoder(haematoxylin, training=training)
        o_features = self.o_encoder(counter_stain, training=training)
        predicted_counter_stain = self.h_to_o_decoder(h_features, training=training)
        predicted_haematoxylin = self.o_to_h_decoder(o_features, training=training)
        h_to_o = tf.reduce_mean(tf.square(_centre_crop_like(counter_stain, predicted_counter_stain) - predicted_counter_stain))
        o_to_h = tf.reduce_mean(tf.square(_centre_crop_like(haematoxylin, predicted_haematoxylin) - predicted_haematoxylin))
        return {
            "h_features": h_features,
            "o_features": o_features,
            "predicted_counter_stain": predicted_counter_stain,
            "predicted_haematoxylin": predicted_haematoxylin,
            "h_to_o_loss": h_to_o,
            "o_to_h_loss": o_to_h,
            "cross_stain_loss": h_to_o + o_to_h,
        }

    def cross_stain_panels(self, rgb) -> dict[str, np.ndarray]:
        """Return the images of a figure: RGB, H, O and both cross-stain predictions, each NHWC in [0, 1]."""
        rgb = tf.convert_to_tensor(rgb, tf.float32)
        haematoxylin, counter_stain = self.separate(rgb)
        result = self.cross_stain(haematoxylin, counter_stain, training=False)
        return {
            "RGB": rgb.numpy(),
            "H": haematoxylin.numpy(),
            "O": counter_stain.numpy(),
            "O predicted from H": result["predicted_counter_stain"].numpy(),
            "H predicted from O": result["predicted_haematoxylin"].numpy(),
        }


class CrossStainPrediction(CrossStainParts, keras.Model):
    """Stage 1: predict the counter-stain from haematoxylin and haematoxylin from the counter-stain."""

    def __init__(self, encoder, h_encoder, o_encoder, h_to_o_decoder, o_to_h_decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.h_encoder = h_encoder
        self.o_encoder = o_encoder
        self.h_to_o_decoder = h_to_o_decoder
        self.o_to_h_decoder = o_to_h_decoder
        self.trackers = {name: keras.metrics.Mean(name=name) for name in ("loss", "cross_stain_loss", "h_to_o_loss", "o_to_h_loss")}
        # Every part arrives with its weights created, so weights load without a first call.
        self.built = True

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, rgb, training=False):
        """Return the predicted counter-stain and haematoxylin images of an RGB batch."""
        haematoxylin, counter_stain = self.separate(rgb)
        result = self.cross_stain(haematoxylin, counter_stain, training)
        return result["predicted_counter_stain"], result["predicted_haematoxylin"]

    def _cross_stain_losses(self, rgb, training: bool) -> dict:
        haematoxylin, counter_stain = self.separate(rgb)
        result = self.cross_stain(haematoxylin, counter_stain, training)
        return {**result, "loss": result["cross_stain_loss"]}

    def _record(self, losses: dict) -> dict:
        for name, tracker in self.trackers.items():
            tracker.update_state(losses[name])
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def train_step(self, rgb):
        # Deconvolve, then predict each stain from the other.
        with tf.GradientTape() as tape:
            losses = self._cross_stain_losses(rgb, training=True)

        # Both encoder-decoders learn together.
        gradients = tape.gradient(losses["loss"], self.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        return self._record(losses)

    def test_step(self, rgb):
        return self._record(self._cross_stain_losses(rgb, training=False))


class CrossStainContrastive(CrossStainParts, BYOL):
    """Stage 2: BYOL between perturbed views of the joined encoder, plus the cross-stain losses.

    The decoders of stage 1 are frozen. Their losses keep the encoders able to predict
    one stain from the other while the contrastive objective shapes the bottleneck.
    """

    def __init__(self, cross_stain: CrossStainPrediction, projection_head, prediction_head, target_encoder, target_projection_head,
                 cross_stain_weight: float = 20.0, **kwargs):
        super().__init__(cross_stain.encoder, projection_head, prediction_head, target_encoder, target_projection_head, **kwargs)
        if cross_stain_weight < 0:
            raise ValueError(f"cross_stain_weight={cross_stain_weight} must not be negative (the study uses 20).")
        self.h_encoder = cross_stain.h_encoder
        self.o_encoder = cross_stain.o_encoder
        self.h_to_o_decoder = cross_stain.h_to_o_decoder
        self.o_to_h_decoder = cross_stain.o_to_h_decoder
        self.h_to_o_decoder.trainable = False
        self.o_to_h_decoder.trainable = False
        self.cross_stain_weight = cross_stain_weight
        self.byol_loss_tracker = keras.metrics.Mean(name="byol_loss")
        self.cross_stain_loss_tracker = keras.metrics.Mean(name="cross_stain_loss")

    @property
    def metrics(self):
        return [self.loss_tracker, self.byol_loss_tracker, self.cross_stain_loss_tracker, self.momentum_tracker]

    def call(self, views, training=False):
        """Return the online predictions for a batch of RGB views."""
        return self._online(views, training)[0]

    def _online(self, views, training: bool):
        haematoxylin, counter_stain = self.separate(views)
        result = self.cross_stain(haematoxylin, counter_stain, training)
        bottleneck = tf.concat([result["h_features"][-1], result["o_features"][-1]], axis=-1)
        projections = self.projection_head(self.pooling(bottleneck), training=training)
        return self.prediction_head(projections, training=training), result["cross_stain_loss"]

    def compute_losses(self, view_1, view_2, training: bool) -> dict:
        # Online predictions and cross-stain losses of both views, in one pass each.
        predictions_1, cross_stain_1 = self._online(view_1, training)
        predictions_2, cross_stain_2 = self._online(view_2, training)

        # Target projections through the moving-average copy of the joined encoder.
        targets_1 = self.target_projection(view_1, training)
        targets_2 = self.target_projection(view_2, training)

        contrastive = byol_loss(predictions_1, targets_1, predictions_2, targets_2)
        cross_stain = (cross_stain_1 + cross_stain_2) / 2.0
        return {"loss": contrastive + self.cross_stain_weight * cross_stain, "byol_loss": contrastive, "cross_stain_loss": cross_stain}


def _stain_path(model_config: dict, stain: str, name: str) -> keras.Model:
    """Build the UNet encoder of one stain's intensity image (one channel)."""
    return build_encoder(model_config["depth"], model_config["filters"], model_config["padding"], name=name, channels=1, input_name=stain)


def build_cross_stain(config: dict, previous: keras.Model | None = None) -> CrossStainPrediction:
    """Build stage 1: H and O encoders, the joined RGB encoder and two decoders."""
    model_config = config["model"]
    _, matrix = stain_settings(config["method"])
    patch_size, padding = int(config["data"]["patch_size"]), model_config["padding"]

    h_encoder = _stain_path(model_config, "haematoxylin", "haematoxylin_encoder")
    o_encoder = _stain_path(model_config, "counter_stain", "counter_stain_encoder")
    return CrossStainPrediction(
        build_stain_encoder(matrix, h_encoder, o_encoder),
        h_encoder,
        o_encoder,
        build_decoder(h_encoder, patch_size, padding, output_channels=1, activation="sigmoid", name="h_to_o_decoder"),
        build_decoder(o_encoder, patch_size, padding, output_channels=1, activation="sigmoid", name="o_to_h_decoder"),
        name="hrcsco_cross_stain",
    )


def build_contrastive(config: dict, previous: keras.Model | None) -> CrossStainContrastive:
    """Build stage 2 around the trained stage-1 model ``previous``."""
    cross_stain = require_previous_stage(CONTRASTIVE, CROSS_STAIN, previous)
    if not isinstance(cross_stain, CrossStainPrediction):
        raise TypeError(f"Stage {CONTRASTIVE!r} starts from a CrossStainPrediction model, got {type(cross_stain).__name__}.")
    model_config, method_config = config["model"], config["method"]
    _, matrix = stain_settings(method_config)

    def build_target_encoder(name):
        return build_stain_encoder(
            matrix,
            copy_network(cross_stain.h_encoder, lambda n: _stain_path(model_config, "haematoxylin", n), "target_haematoxylin_encoder"),
            copy_network(cross_stain.o_encoder, lambda n: _stain_path(model_config, "counter_stain", n), "target_counter_stain_encoder"),
            name=name,
        )

    def build_projection_head(name):
        return build_head(method_config["projection_head"], name, cross_stain.encoder.outputs[-1].shape[-1])

    projection_head = build_projection_head("projection_head")
    return CrossStainContrastive(
        cross_stain,
        projection_head,
        build_head(method_config["prediction_head"], "prediction_head", int(method_config["projection_head"]["output_units"])),
        target_encoder=build_target_encoder("target_encoder"),
        target_projection_head=copy_network(projection_head, build_projection_head, "target_projection_head"),
        cross_stain_weight=float(method_config["cross_stain_weight"]),
        momentum=float(method_config["momentum"]),
        total_steps=total_training_steps(config["train"]),
        name="hrcsco_contrastive",
    )


def cross_stain_inputs(crops: tf.data.Dataset, config: dict) -> tf.data.Dataset:
    """Map batches of uint8 crops to float RGB batches with random flips."""
    return crops.map(lambda batch: random_flips(tf.cast(batch, tf.float32) / 255.0), num_parallel_calls=tf.data.AUTOTUNE)


def perturb_stains(images: tf.Tensor, rgb_from_stains: np.ndarray, perturbation: PerturbationConfig) -> tf.Tensor:
    """Return RGB images whose H and O concentrations are randomly scaled and shifted.

    The residual channel is kept, so deconvolving the result inside the model gives
    back the perturbed H and O concentrations, up to float rounding.
    """
    stains_from_rgb = np.linalg.inv(rgb_from_stains).astype(np.float32)
    concentrations = rgb_to_concentrations(images, stains_from_rgb)
    perturbed = perturb_concentrations(concentrations[..., :2], perturbation)
    return concentrations_to_rgb(tf.concat([perturbed, concentrations[..., 2:]], axis=-1), rgb_from_stains.astype(np.float32))


def contrastive_inputs(crops: tf.data.Dataset, config: dict) -> tf.data.Dataset:
    """Map batches of uint8 crops to pairs of views with perturbed stain concentrations."""
    view_config = ViewConfig.from_config(config.get("augment", {}))
    perturbation = PerturbationConfig.from_config(config["method"].get("perturbation", {}))
    _, matrix = stain_settings(config["method"])

    def view(images):
        views = perturb_stains(random_view(images, view_config), matrix, perturbation)
        # Resizing crops loses the static patch size, which the stage-1 decoders need.
        return tf.ensure_shape(views, images.shape)

    def views(batch):
        images = tf.cast(batch, tf.float32) / 255.0
        return view(images), view(images)

    return crops.map(views, num_parallel_calls=tf.data.AUTOTUNE)


def encoder_tags(config: dict) -> dict[str, str]:
    """Tags of a registered HR-CS-CO encoder: its stain code and counter-stain."""
    method_config = config["method"]
    code, matrix = stain_settings(method_config)
    custom = method_config.get("stain_matrix") or None
    tags = {"stain": code, "counter_stain": counter_stain_name(code, custom)}
    if custom:
        tags["stain_matrix"] = str(np.round(matrix, 4).tolist())
    return tags


@register("hrcsco")
def hrcsco() -> Method:
    # NOTE: cross_stain runs first, as in CS-CO. The README of the study's code
    # (github.com/zeeshannisar/resource-effecient-multi-stain-kidney-glomeruli-segmentation)
    # lists the two training scripts in the reverse order.
    stages = (
        Stage(CROSS_STAIN, build_cross_stain, cross_stain_inputs),
        Stage(CONTRASTIVE, build_contrastive, contrastive_inputs),
    )
    return Method("hrcsco", build_cross_stain, cross_stain_inputs, stages=stages, encoder_tags=encoder_tags)
