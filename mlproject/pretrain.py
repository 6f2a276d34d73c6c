"""Entry point ``pretrain``: self-supervised pre-training of a UNet encoder, then registration."""

from __future__ import annotations

import logging

import mlflow

from mlproject.common import UsageError, demo_paths, entry_run, optional, parser
from registry.encoders import register_encoder
from registry.promotion import promote, score_reference
from registry.protocol import PROTOCOL, ProtocolData, prepare_protocol_data
from registry.scores import ScoreRecord
from tracking.callbacks import CheckpointLogger, MlflowMetricsLogger
from tracking.datasets import log_dataset
from tracking.figures import close, learning_curves_figure, views_figure
from tracking.models import encoder_signature, log_keras_model
from tracking.runs import log_config, log_json, scratch_dir, set_seed
from training import config as configuration
from training.data.unlabelled import load_unlabelled
from training.methods import available, get_method
from training.pretraining import compile_method_model, fit_method_model, make_crop_datasets

logger = logging.getLogger(__name__)


def parse_args(argv=None):
    p = parser("Pre-train a UNet encoder without labels and register it.")
    p.add_argument("--method", default="simclr", help=f"Self-supervised method: {', '.join(available())}.")
    p.add_argument("--data-dir", default="", help="Unlabelled images: <root>/<domain>/* or <root>/{train,validation}/<domain>/*. Empty: the scikit-image demo.")
    p.add_argument("--stain", default="", help="Use only this domain folder (a stain code such as 16); empty: all domains.")
    p.add_argument("--epochs", default="", help="Training epochs; empty: from the configuration.")
    p.add_argument("--batch-size", default="", help="Patches per batch; empty: from the configuration.")
    p.add_argument("--patch-size", default="", help="Patch side in pixels; empty: from the configuration.")
    p.add_argument("--learning-rate", default="", help="Peak learning rate; empty: from the configuration.")
    p.add_argument("--config", default="small", help="Overlay: a shipped name (small, study) or a YAML file path.")
    p.add_argument("--register-as", default="", help="Registered model name; empty: unet-encoder-<method>; none: do not register.")
    p.add_argument("--seed", default="", help="Random seed; empty: from the configuration.")
    p.add_argument(
        "--labelled-dir", default="",
        help="Labelled set: after training, score the encoder under the selection protocol on it and move champion "
        "if it beats the current one. Empty: no scoring.",
    )
    p.add_argument(
        "--selection-config", default="selection",
        help="Fine-tuning overlay of the selection protocol, as promote's config; scores compare only under the same one.",
    )
    return p.parse_args(argv)


def resolve_config(args) -> dict:
    overrides = {
        "train.epochs": args.epochs,
        "train.batch_size": args.batch_size,
        "data.patch_size": args.patch_size,
        "train.learning_rate": args.learning_rate,
        "train.seed": args.seed,
    }
    return configuration.resolve(args.method, args.config, overrides)


def run(args) -> None:
    if args.method not in available():
        raise UsageError(f"method={args.method!r} is not available; choose one of {', '.join(available())}.")
    config = resolve_config(args)
    data_dir = optional(args.data_dir)
    if data_dir is None:
        data_dir, _ = demo_paths()
        logger.info("No data_dir given: pre-training on the scikit-image IHC demo image in %s.", data_dir)
        mlflow.set_tag("dataset", "skimage-immunohistochemistry-demo")
    # A labelled set for scoring is checked and loaded before pre-training starts.
    labelled_dir = optional(args.labelled_dir)
    selection_data = prepare_protocol_data(labelled_dir, args.selection_config, PROTOCOL) if labelled_dir else None
    stain = optional(args.stain)
    mlflow.set_tags({"method": args.method, "stains": stain or "all"})
    log_config(config, {"data_dir": str(data_dir), "method": args.method})

    data, train = config["data"], config["train"]
    images = load_unlabelled(
        data_dir, int(data["patch_size"]), float(data["image_scale"]), float(data["validation_share"]),
        domains=[stain] if stain else None, seed=int(train["seed"]),
    )
    digest = log_dataset(data_dir, images.files, name=f"unlabelled:{data_dir}", context="training")
    mlflow.log_params({"n_train_images": len(images.train), "n_validation_images": len(images.validation), "domains": ",".join(images.domains)})
    if not stain:
        mlflow.set_tag("stains", ",".join(images.domains))

    set_seed(int(train["seed"]))
    method = get_method(args.method)
    model = method.build_model(config)
    datasets = make_crop_datasets(images, method, config)
    compile_method_model(model, config)

    view_1, view_2 = next(iter(datasets.validation))
    figure = views_figure(view_1.numpy(), view_2.numpy(), title=f"{args.method}: two random views per patch")
    mlflow.log_figure(figure, "figures/views.png")
    close(figure)

    run_id = mlflow.active_run().info.run_id
    checkpoints = CheckpointLogger(run_id, scratch_dir("checkpoints-"), monitor="val_loss")
    history = fit_method_model(model, datasets, config, callbacks=[MlflowMetricsLogger(run_id), checkpoints])
    figure = learning_curves_figure(history.history, title=f"{args.method} pre-training")
    mlflow.log_figure(figure, "figures/learning_curves.png")
    close(figure)
    log_json(history.history, "history.json")

    info = log_keras_model(model.encoder, "encoder", encoder_signature(model.encoder))
    selection = score_new_encoder(info.model_uri, selection_data) if selection_data else None
    register_as = optional(args.register_as) if args.register_as.strip().lower() != "none" else "none"
    if register_as == "none":
        logger.info("register_as=none: the encoder is logged as %s but not registered.", info.model_uri)
        return
    version = register_encoder(
        info, method=args.method, stains=stain or ",".join(images.domains), dataset_digest=digest, config=config,
        name=register_as, score=checkpoints.best, score_name="best_val_loss",
        selection=selection, claim_champion=selection is None,
    )
    if selection_data is not None:
        promote(version.name, selection_data, versions=[str(version.version)])


def score_new_encoder(model_uri: str, data: ProtocolData) -> ScoreRecord:
    """Score the logged encoder under the selection protocol in a nested run, before it is registered."""
    files = [path for item in data.items for path in (item.image_path, item.mask_path)]
    log_dataset(data.labelled_dir, files, name=f"labelled:{data.labelled_dir}", context="selection")
    record, _ = score_reference(model_uri, data, run_name=f"score {data.protocol.name}")
    mlflow.log_metric("selection_score", record.score)
    mlflow.set_tags({"selection_protocol": record.protocol, "selection_protocol_key": record.key})
    return record


def main(argv=None) -> None:
    args = parse_args(argv)
    with entry_run("pretrain", tags={"method": args.method}):
        run(args)


if __name__ == "__main__":
    main()
