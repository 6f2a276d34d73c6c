"""Entry point ``segment``: train a glomerulus UNet from scratch or from a registered encoder."""

from __future__ import annotations

import logging

import mlflow

from mlproject.common import demo_paths, entry_run, optional, parse_bool, parser
from registry.loading import load_encoder, resolve_reference
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
    log_config(config, {"labelled_dir": str(labelled_dir), "encoder": args.encoder})
    data, train = config["data"], config["train"]

    items, stains, splits = prepare_splits(labelled_dir, config)
    log_json(splits.to_json(group_pattern=data["group_pattern"], repetition=int(config["segment"]["repetition"])), "splits.json")
    n_train_patches = int(train["epochs"]) * int(train["steps_per_epoch"]) * int(train["batch_size"])
    mlflow.log_params({"n_labelled": len(splits.labelled), "n_train_images": len(splits.train), "n_validation": len(splits.validation), "n_test": len(splits.test), "n_train_patches": n_train_patches})
    mlflow.set_tags({"stains": ",".join(stains), "label_fraction": str(config["segment"]["label_fraction"])})
    files = [p for item in items for p in (item.image_path, item.mask_path)]
    digest = log_dataset(labelled_dir, files, name=f"labelled:{labelled_dir}", context="training")

    encoder = None
    if resolved is not None:
        encoder, resolved = load_encoder(resolved)
        mlflow.set_tags({"encoder": resolved.uri, "method": resolved.tags.get("method", "unknown")})
    else:
        mlflow.set_tags({"encoder": "none", "method": "baseline"})

    scale = float(data["image_scale"])
    training_images = load_labelled(splits.labelled, scale)
    validation_images = load_labelled(splits.validation, scale)

    run_id = mlflow.active_run().info.run_id
    checkpoints = CheckpointLogger(run_id, scratch_dir("checkpoints-"), monitor="val_loss")
    trained = train_segmentation_model(config, training_images, validation_images, encoder, callbacks=[MlflowMetricsLogger(run_id), checkpoints])
    model, history = trained.model, trained.history
    figure = learning_curves_figure({k: v for k, v in history.history.items() if k != "learning_rate"}, title="Segmentation training")
    mlflow.log_figure(figure, "figures/learning_curves.png")
    close(figure)

    evaluation = evaluate(model, splits.test, scale)
    mlflow.log_metric("test_f1", evaluation.pooled)
    mlflow.log_metrics({f"test_f1_{stain}": value for stain, value in evaluation.per_stain.items()})
    log_json(evaluation.per_image, "test_scores.json")
    log_test_figure(model, evaluation, splits, scale)
    logger.info("test_f1 %.4f; per stain: %s", evaluation.pooled, ", ".join(f"{s} {v:.4f}" for s, v in evaluation.per_stain.items()))

    info = log_keras_model(model, "model", segmentation_signature(model))
    register_as = optional(args.register_as)
    if register_as is None:
        return
    tags = {
        "method": mlflow.get_run(run_id).data.tags.get("method", "baseline"),
        "stains": ",".join(stains),
        "dataset_digest": digest,
        "source_run_id": run_id,
        "encoder": mlflow.get_run(run_id).data.tags.get("encoder", "none"),
        "label_fraction": str(config["segment"]["label_fraction"]),
        "test_f1": f"{evaluation.pooled:.6g}",
    }
    version = register_version(info.model_uri, register_as, run_id, tags, description="Glomerulus UNet", model_id=info.model_id)
    mlflow.set_tags({"registered_model_name": register_as, "registered_model_version": version.version})


def main(argv=None) -> None:
    args = parse_args(argv)
    with entry_run("segment"):
        run(args)


if __name__ == "__main__":
    main()
