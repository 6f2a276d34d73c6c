"""The selection protocol: how encoder versions are scored before ``champion`` moves.

Protocol ``fixed-5pct-v1`` measures how well an encoder serves glomerulus
segmentation when labels are scarce. For every encoder version alike it:

1. splits the labelled set by biopsy with seed 42 into train, validation (20 %) and
   test (20 %), exactly as the ``segment`` entry point does;
2. keeps 5 % of the training images of every stain (at least one per stain,
   repetition 0), the same images for every encoder;
3. fine-tunes a UNet decoder on the encoder, the whole encoder trainable, with seed 42
   and the geometry and training budget of the configuration overlay. The default
   ``small`` trains 3 epochs of 10 steps of 8 patches of 128 px at half scale with
   Adam 1e-3, and ``selection`` trains 10 epochs of 20 steps otherwise alike;
4. keeps the weights of the last epoch, with no checkpoint selection, because the
   score itself is measured on the validation split;
5. scores the pooled pixel-level glomerulus F1 over the whole validation images,
   predicted at full resolution. The test split is never used, so selection leaves
   the study's test scores untouched.

NOTE: a score is one fine-tuning run with one seed. Two randomly initialised encoders
scored 0.348 and 0.318 on the AIDPATH PAS set (one labelled image) under the
``selection`` overlay, so a difference of a few hundredths there can come from the
initial weights alone. Averaging several seeds would need a new protocol name.

Two scores are comparable only under the same protocol key, a digest of the protocol
name, the resolved fine-tuning configuration and the labelled dataset's content. A
version scored under another key is re-scored, never compared. docs/registry.md
describes the protocol for users.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import keras

from tracking.datasets import files_digest
from training import config as configuration
from training.config import to_yaml
from training.data.labelled import LabelledImage, LoadedImage, load_labelled
from training.data.splits import Splits
from training.segmentation import Evaluation, evaluate, prepare_splits, train_segmentation_model

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class SelectionProtocol:
    """The fixed part of a selection protocol: labelled subset, splits and seed."""

    name: str
    label_fraction: float
    repetition: int
    seed: int
    validation_share: float
    test_share: float

    def overrides(self) -> dict[str, object]:
        """Return the configuration keys the protocol fixes, whatever the overlay sets."""
        return {
            "segment.label_fraction": self.label_fraction,
            "segment.repetition": self.repetition,
            "segment.stain": "all",
            "segment.freeze_encoder": False,
            "train.seed": self.seed,
            "data.validation_share": self.validation_share,
            "data.test_share": self.test_share,
        }


FIXED_5PCT_V1 = SelectionProtocol(
    name="fixed-5pct-v1", label_fraction=0.05, repetition=0, seed=42, validation_share=0.2, test_share=0.2,
)

# The protocol that `promote` and `pretrain` use. A new protocol gets a new name, so
# that scores measured under the old one are re-scored instead of compared.
PROTOCOL = FIXED_5PCT_V1

# Keys that change the log output but not the score stay out of the protocol key.
_UNKEYED = ("train.verbose",)


def protocol_config(overlay: str | None, protocol: SelectionProtocol = PROTOCOL) -> dict:
    """Resolve the fine-tuning configuration: segment defaults, ``overlay``, then the protocol's keys."""
    return configuration.resolve("segment", overlay, protocol.overrides())


def protocol_key(protocol: SelectionProtocol, config: Mapping, dataset_digest: str) -> str:
    """Return 16 hex digits that change with the protocol, the configuration or the data."""
    keyed = {key: value for key, value in configuration.flatten(config).items() if key not in _UNKEYED}
    text = "\n".join([protocol.name, to_yaml(keyed), dataset_digest])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class ProtocolData:
    """A labelled set split and loaded once under a protocol, to score many encoders."""

    protocol: SelectionProtocol
    overlay: str
    config: dict
    labelled_dir: Path
    items: list[LabelledImage]
    stains: list[str]
    splits: Splits
    training_images: list[LoadedImage]
    validation_images: list[LoadedImage]
    dataset_digest: str
    key: str


def prepare_protocol_data(labelled_dir: Path | str, overlay: str = "small", protocol: SelectionProtocol = PROTOCOL) -> ProtocolData:
    """Discover, split and load the labelled set; raise DatasetError before any training.

    Only the labelled subset and the validation split are decoded, because the
    protocol never reads the test split.
    """
    labelled_dir = Path(labelled_dir)
    config = protocol_config(overlay, protocol)
    items, stains, splits = prepare_splits(labelled_dir, config)
    files = [path for item in items for path in (item.image_path, item.mask_path)]
    digest = files_digest(labelled_dir, files)[:16]
    scale = float(config["data"]["image_scale"])
    data = ProtocolData(
        protocol=protocol,
        overlay=overlay,
        config=config,
        labelled_dir=labelled_dir,
        items=items,
        stains=stains,
        splits=splits,
        training_images=load_labelled(splits.labelled, scale),
        validation_images=load_labelled(splits.validation, scale),
        dataset_digest=digest,
        key=protocol_key(protocol, config, digest),
    )
    logger.info(
        "Protocol %s (key %s): %d labelled and %d validation images of %s, stains %s.",
        protocol.name, data.key, len(splits.labelled), len(splits.validation), labelled_dir, ", ".join(stains),
    )
    return data


def score_encoder(encoder: keras.Model, data: ProtocolData, callbacks=()) -> Evaluation:
    """Fine-tune a UNet on ``encoder`` under the protocol and score the validation split.

    The encoder's weights change during fine-tuning, so pass a freshly loaded copy.
    The pooled F1 of the returned evaluation is the selection score.
    """
    trained = train_segmentation_model(data.config, data.training_images, data.validation_images, encoder, callbacks)
    evaluation = evaluate(trained.model, data.splits.validation, float(data.config["data"]["image_scale"]), progress=False)
    # Each version builds a new UNet; clearing the session keeps memory flat over many versions.
    keras.backend.clear_session()
    return evaluation
