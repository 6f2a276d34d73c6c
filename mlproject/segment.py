"""Entry point ``segment``: train a glomerulus UNet from scratch or from a registered encoder."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import keras
import mlflow
from mlflow.tracking import MlflowClient

from mlproject.common import demo_paths, entry_run, optional, parse_bool, parser
from registry.loading import ModelReference, load_encoder, resolve_reference
from registry.names import SEGMENTATION_MODEL
from registry.versions import register_version
from tracking.callbacks import CheckpointLogger, MlflowMetricsLogger
from tracking.datasets import log_dataset
from tracking.figures import close, learning_curves_figure, predictions_figure
from tracking.models import log_keras_model, segmentation_signature
from tracking.runs import log_config, log_json, scratch_dir
from training import config as configuration
from training.data.images import read_image, read_mask
from training.data.labelled import load_labelled
from training.inference import predict_mask
from training.metrics import f1_score
from training.segmentation import evaluate, prepare_splits, train_segmentation_model

logger = logging.getLogger(__name__)


def parse_args(argv=None):
    p = parser("Train a UNet to segment glomeruli, from scratch or from a pre-trained encoder.")
    p.add_argument("--labelled-dir", default="", help="<root>/images/[<stain>/]<name>.<ext> with <root>/masks/[<stain>/]<name>.png. Empty: the scikit-image demo.")
    p.add_argument("--encoder", default="none", help="none (train from scratch), a registered name (alias champion), name@alias, name/version or any MLflow model URI.")
    p.add_argument("--label-fraction", default="", help="Share of the training images whose labels are used, 0 < f <= 1; empty: from the configuration.")
    p.add_argument("--repetition", default="", help="Repetition index; each draws its own labelled subset.")
    p.add_argument("--stain", default="", help="Train on this stain only (all: every stain); the test covers every stain.")
    p.add_argument("--epochs", default="")
    p.add_argument("--batch-size", default="")
    p.add_argument("--patch-size", default="")
    p.add_argument("--learning-rate", default="")
    p.add_argument("--freeze-encoder", default="", help="true: keep the encoder's weights fixed.")
    p.add_argument("--config", default="small", help="Overlay: a shipped name (small, study) or a YAML file path.")
    p.add_argument("--seed", default="")
    p.add_argument("--register-as", default=SEGMENTATION_MODEL, help="Registered model name; none: do not register.")
    return p.parse_args(argv)


def resolve_config(args) -> dict:
    freeze = parse_bool(args.freeze_encoder)
    overrides = {
        "segment.label_fraction": args.label_fraction,
        "segment.repetition": args.repetition,
        "segment.stain": args.stain,
        "segment.freeze_encoder": freeze,
        "train.epochs": args.epochs,
        "train.batch_size": args.batch_size,
        "data.patch_size": args.patch_size,
        "train.learning_rate": args.learning_rate,
        "train.seed": args.seed,
    }
    return configuration.resolve("segment", args.config, overrides)


def log_test_figure(model, evaluation, splits, image_scale: float) -> None:
    """Draw predictions over one test image per stain, beside the ground truth."""
    samples, seen = [], set()
    for item in splits.test:
        if item.stain in seen:
            continue
        seen.add(item.stain)
        image, truth = read_image(item.image_path), read_mask(item.mask_path)
        prediction = predict_mask(model, image, image_scale)
        samples.append({"image": image, "truth": truth, "prediction": prediction, "name": f"{item.stain}/{item.name}", "f1": f1_score(prediction, truth)})
    figure = predictions_figure(samples, max_images=6)
    mlflow.log_figure(figure, "figures/test_predictions.png")
    close(figure)


@dataclass
class SegmentationRun:
    """A UNet trained in the active run, with what scoring and registering it need."""

    run_id: str
    config: dict
    model: keras.Model
    history: dict
    checkpoints: CheckpointLogger
    splits: object
    stains: list[str]
    dataset_digest: str


def train_segmentation(
    config: dict, labelled_dir, encoder: str = "none", resolved: ModelReference | None = None, callbacks=(),
    monitor: str = "val_loss", mode: str = "min",
) -> SegmentationRun:
    """Log the inputs of a segmentation run, then train a UNet in the active run.

    ``encoder`` is the encoder parameter as given and ``resolved`` its resolution (None:
    train from scratch). ``callbacks`` run after the tracking callbacks, so they see
    every epoch's logged metrics. The model keeps the weights of the epoch with the
    best ``monitor`` value (lowest for ``mode="min"``, highest for ``"max"``).
    """
    log_config(config, {"labelled_dir": str(labelled_dir), "encoder": encoder})
    data, train = config["data"], config["train"]

    items, stains, splits = prepare_splits(labelled_dir, config)
    log_json(splits.to_json(group_pattern=data["group_pattern"], repetition=int(config["segment"]["repetition"])), "splits.json")
    n_train_patches = int(train["epochs"]) * int(train["steps_per_epoch"]) * int(train["batch_size"])
    mlflow.log_params({"n_labelled": len(splits.labelled), "n_train_images": len(splits.train), "n_validation": len(splits.validation), "n_test": len(splits.test), "n_train_patches": n_train_patches})
    mlflow.set_tags({"stains": ",".join(stains), "label_fraction": str(config["segment"]["label_fraction"])})
    files = [p for item in items for p in (item.image_path, item.mask_path)]
    digest = log_dataset(labelled_dir, files, name=f"labelled:{labelled_dir}", context="training")

    encoder_model = None
    if resolved is not None:
        encoder_model, resolved = load_encoder(resolved)
        mlflow.set_tags({"encoder": resolved.uri, "method": resolved.tags.get("method", "unknown")})
    else:
        mlflow.set_tags({"encoder": "none", "method": "baseline"})

    scale = float(data["image_scale"])
    training_images = load_labelled(splits.labelled, scale)
    validation_images = load_labelled(splits.validation, scale)

    run_id = mlflow.active_run().info.run_id
    with scratch_dir("checkpoints-") as folder:
        checkpoints = CheckpointLogger(run_id, folder, monitor=monitor, mode=mode)
        trained = train_segmentation_model(
            config, training_images, validation_images, encoder_model, callbacks=[MlflowMetricsLogger(run_id), checkpoints, *callbacks],
        )
    model, history = trained.model, trained.history
    figure = learning_curves_figure({k: v for k, v in history.history.items() if k != "learning_rate"}, title="Segmentation training")
    mlflow.log_figure(figure, "figures/learning_curves.png")
    close(figure)
    return SegmentationRun(run_id, config, model, history.history, checkpoints, splits, stains, digest)


def evaluate_and_log_model(trained: SegmentationRun):
    """Score the test split, log the scores and figure, then log the model; return (evaluation, ModelInfo)."""
    scale = float(trained.config["data"]["image_scale"])
    evaluation = evaluate(trained.model, trained.splits.test, scale)
    mlflow.log_metric("test_f1", evaluation.pooled)
    mlflow.log_metrics({f"test_f1_{stain}": value for stain, value in evaluation.per_stain.items()})
    log_json(evaluation.per_image, "test_scores.json")
    log_test_figure(trained.model, evaluation, trained.splits, scale)
    logger.info("test_f1 %.4f; per stain: %s", evaluation.pooled, ", ".join(f"{s} {v:.4f}" for s, v in evaluation.per_stain.items()))

    info = log_keras_model(trained.model, "model", segmentation_signature(trained.model))
    return evaluation, info


def lineage_tags(trained: SegmentationRun, evaluation) -> dict[str, str]:
    """Tags a registered segmentation model carries: what made it, from which data, its score."""
    run_tags = MlflowClient().get_run(trained.run_id).data.tags
    return {
        "method": run_tags.get("method", "baseline"),
        "stains": ",".join(trained.stains),
        "dataset_digest": trained.dataset_digest,
        "source_run_id": trained.run_id,
        "encoder": run_tags.get("encoder", "none"),
        "label_fraction": str(trained.config["segment"]["label_fraction"]),
        "test_f1": f"{evaluation.pooled:.6g}",
    }


def register_segmentation(trained: SegmentationRun, evaluation, info, name: str):
    """Register the run's logged model as a version of ``name`` with its lineage tags."""
    client = MlflowClient()
    tags = lineage_tags(trained, evaluation)
    version = register_version(info.model_uri, name, trained.run_id, tags, description="Glomerulus UNet", model_id=info.model_id)
    client.set_tag(trained.run_id, "registered_model_name", name)
    client.set_tag(trained.run_id, "registered_model_version", version.version)
    return version


def run(args) -> None:
    config = resolve_config(args)
    # Resolve the encoder first, so a wrong name or alias fails before any data is read.
    encoder_reference = optional(args.encoder)
    resolved = resolve_reference(encoder_reference) if encoder_reference else None
    labelled_dir = optional(args.labelled_dir)
    if labelled_dir is None:
        _, labelled_dir = demo_paths()
        logger.info("No labelled_dir given: training on the scikit-image IHC demo task in %s.", labelled_dir)
        mlflow.set_tag("dataset", "skimage-immunohistochemistry-demo")

    trained = train_segmentation(config, labelled_dir, args.encoder, resolved)
    evaluation, info = evaluate_and_log_model(trained)
    register_as = optional(args.register_as)
    if register_as is None:
        return
    register_segmentation(trained, evaluation, info, register_as)


def main(argv=None) -> None:
    args = parse_args(argv)
    with entry_run("segment"):
        run(args)


if __name__ == "__main__":
    main()
