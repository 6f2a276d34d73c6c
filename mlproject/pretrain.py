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
from tracking.figures import close, learning_curves_figure, stain_channels_figure, views_figure
from tracking.models import encoder_signature, log_keras_model
from tracking.runs import log_config, log_json, scratch_dir, set_seed
from tracking.stages import download_stage_weights, find_finished_stage, log_stage_weights, stage_run
from training import config as configuration
from training.data.unlabelled import discover_unlabelled, load_unlabelled
from training.methods import Method, available, get_method, stage_config
from training.pretraining import compile_method_model, fit_method_model, make_crop_datasets, preview_views
from training.stain.deconvolution import reject_grey_images

logger = logging.getLogger(__name__)


def parse_args(argv=None):
    p = parser("Pre-train a UNet encoder without labels and register it.")
    p.add_argument("--method", default="simclr", help=f"Self-supervised method: {', '.join(available())}.")
    p.add_argument("--data-dir", default="", help="Unlabelled images: <root>/<domain>/* or <root>/{train,validation}/<domain>/*. Empty: the scikit-image demo.")
    p.add_argument(
        "--stain", default="",
        help="Use only this domain folder (a stain code such as 16); empty: all domains. For HR-CS-CO it also selects the "
        "stain matrix, and all images are used when no folder has that name.",
    )
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
    p.add_argument("--stage", default="all", help="Multi-stage methods (hrcsco): all, or one stage name (cross_stain, contrastive).")
    p.add_argument(
        "--resume-from", default="",
        help="Run id of an earlier pretrain run whose finished stages the requested stage starts from; empty: this run.",
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
    config = configuration.resolve(args.method, args.config, overrides)
    stain = optional(args.stain)
    if stain and "stain" in config.get("method", {}):
        # HR-CS-CO picks its stain matrix by stain code.
        config["method"]["stain"] = stain
    return config


def per_stain_domains(data_dir, stain: str | None, config: dict) -> list[str] | None:
    """Return the domain folders to read: the stain's folder, or all of them (None).

    A method with a per-stain stain matrix (``method.stain``) reads the stain's folder
    where one exists and every image otherwise, such as a flat folder of one stain.
    Without a stain it needs data of a single domain.
    """
    if "stain" not in config.get("method", {}):
        return [stain] if stain else None
    _, found = discover_unlabelled(data_dir)
    domains = sorted({domain for per_domain in found.values() for domain in per_domain})
    if not stain:
        if len(domains) > 1:
            raise UsageError(
                f"{config['method']['name']} trains per stain, and {data_dir} has the domain folders {', '.join(domains)}. "
                "Pass one of them as -P stain=<code>."
            )
        logger.info("No stain given: the images of %s are read as stain %s.", data_dir, config["method"]["stain"])
        return None
    if stain in domains:
        return [stain]
    logger.info("No domain folder named %s in %s: every image is read as stain %s.", stain, data_dir, stain)
    return None


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
    images, digest, _ = prepare_pretraining(config, args.method, data_dir, stain)

    method = get_method(args.method)
    if not method.stages and (args.stage.strip() not in ("", "all") or optional(args.resume_from)):
        logger.warning("%s trains in one stage: stage=%s and resume_from=%s are ignored.", args.method, args.stage, args.resume_from)
    if method.stages:
        trained = run_stages(method, config, images, args)
        if trained is None:
            return
        encoder, best = trained
    else:
        encoder, checkpoints = run_single_stage(method, config, images)
        best = checkpoints.best

    info = log_keras_model(encoder, "encoder", encoder_signature(encoder))
    selection = score_new_encoder(info.model_uri, selection_data) if selection_data else None
    register_as = optional(args.register_as) if args.register_as.strip().lower() != "none" else "none"
    if register_as == "none":
        logger.info("register_as=none: the encoder is logged as %s but not registered.", info.model_uri)
        return
    version = register_encoder(
        info, method=args.method, stains=stain or ",".join(images.domains), dataset_digest=digest, config=config,
        name=register_as, score=best, score_name="best_val_loss",
        selection=selection, claim_champion=selection is None,
        extra_tags=method.encoder_tags(config) if method.encoder_tags else None,
    )
    if selection_data is not None:
        promote(version.name, selection_data, versions=[str(version.version)])


def prepare_pretraining(config: dict, method_name: str, data_dir, stain: str | None):
    """Log a pre-training run's inputs, load its images and seed it; return (images, dataset digest, stains)."""
    mlflow.set_tags({"method": method_name, "stains": stain or "all"})
    log_config(config, {"data_dir": str(data_dir), "method": method_name})

    data, train = config["data"], config["train"]
    images = load_unlabelled(
        data_dir, int(data["patch_size"]), float(data["image_scale"]), float(data["validation_share"]),
        domains=per_stain_domains(data_dir, stain, config), seed=int(train["seed"]),
    )
    if "stain" in config.get("method", {}):
        reject_grey_images(images.files)
    digest = log_dataset(data_dir, images.files, name=f"unlabelled:{data_dir}", context="training")
    mlflow.log_params({"n_train_images": len(images.train), "n_validation_images": len(images.validation), "domains": ",".join(images.domains)})
    if not stain:
        mlflow.set_tag("stains", ",".join(images.domains))

    set_seed(int(train["seed"]))
    return images, digest, stain or ",".join(images.domains)


def run_single_stage(method: Method, config: dict, images, callbacks=(), monitor: str = "val_loss", mode: str = "min"):
    """Train a one-stage method in the active run; return its encoder and the CheckpointLogger.

    ``callbacks`` run after the tracking callbacks, so they see every epoch's logged
    metrics. The encoder keeps the weights of the epoch with the best ``monitor`` value
    (lowest for ``mode="min"``, highest for ``"max"``), which the CheckpointLogger holds.
    """
    model = method.build_model(config)
    datasets = make_crop_datasets(images, method, config)
    compile_method_model(model, config)

    view_1, view_2 = next(iter(datasets.validation))
    figure = views_figure(view_1.numpy(), view_2.numpy(), title=f"{method.name}: two random views per patch")
    mlflow.log_figure(figure, "figures/views.png")
    close(figure)

    run_id = mlflow.active_run().info.run_id
    with scratch_dir("checkpoints-") as folder:
        checkpoints = CheckpointLogger(run_id, folder, monitor=monitor, mode=mode)
        history = fit_method_model(model, datasets, config, callbacks=[MlflowMetricsLogger(run_id), checkpoints, *callbacks])
    figure = learning_curves_figure(history.history, title=f"{method.name} pre-training")
    mlflow.log_figure(figure, "figures/learning_curves.png")
    close(figure)
    log_json(history.history, "history.json")
    return model.encoder, checkpoints


def stage_start_model(method: Method, index: int, config: dict, parent_run_id: str, args):
    """Return the model that stage ``index`` starts from, rebuilt from the weights its predecessor logged.

    Raises UsageError naming the command to run first when that stage has not finished.
    """
    if index == 0:
        return None
    previous = method.stages[index - 1]
    finished = find_finished_stage(parent_run_id, previous.name)
    if finished is None:
        stain = f" -P stain={args.stain}" if optional(args.stain) else ""
        raise UsageError(
            f"Stage {method.stages[index].name!r} of {method.name} starts from the weights of stage {previous.name!r}, "
            f"and run {parent_run_id} has no finished {previous.name!r} stage. Run it first: mlflow run . -e pretrain "
            f"-P method={method.name}{stain} -P stage={previous.name}; then pass that run's id as "
            f"-P resume_from=<run id> with -P stage={method.stages[index].name}. Or run both with -P stage=all."
        )
    model = previous.build_model(stage_config(config, previous.name), None)
    model.load_weights(download_stage_weights(finished.info.run_id, previous.name))
    logger.info("Stage %s starts from the weights of stage %s in run %s.", method.stages[index].name, previous.name, finished.info.run_id)
    return model


def run_stages(method: Method, config: dict, images, args):
    """Train the requested stages of a multi-stage method, each as a child run.

    Stages run in the method's order. Each later stage starts from the weights its
    predecessor logged, in this run or in the run given as ``resume_from``. Returns the
    last stage's encoder and best val_loss, or None when the last stage did not run.
    """
    requested = args.stage.strip() or "all"
    names = method.stage_names if requested == "all" else [method.get_stage(requested).name]
    parent_run_id = optional(args.resume_from) or mlflow.active_run().info.run_id
    if parent_run_id != mlflow.active_run().info.run_id:
        mlflow.set_tag("resumed_from", parent_run_id)

    model, best = None, None
    for index, stage in enumerate(method.stages):
        if stage.name not in names:
            continue
        stage_settings = stage_config(config, stage.name)
        start = stage_start_model(method, index, config, parent_run_id, args)
        with stage_run(parent_run_id, stage.name, run_name=f"{method.name}-{stage.name}", tags={"method": method.name}):
            log_config(stage_settings, {"stage": stage.name})
            model = stage.build_model(stage_settings, start)
            datasets = make_crop_datasets(images, stage, stage_settings)
            compile_method_model(model, stage_settings)

            run_id = mlflow.active_run().info.run_id
            with scratch_dir("checkpoints-") as folder:
                checkpoints = CheckpointLogger(run_id, folder, monitor="val_loss")
                history = fit_method_model(model, datasets, stage_settings, callbacks=[MlflowMetricsLogger(run_id), checkpoints])
            log_stage_figures(method, model, datasets, stage.name, history.history, config)
            log_json(history.history, "history.json")
            with scratch_dir("stage-weights-") as folder:
                log_stage_weights(model, stage.name, folder)
            best = checkpoints.best

    if names[-1] != method.stage_names[-1]:
        logger.info("Stage %s finished; run the next stage with -P resume_from=%s.", names[-1], parent_run_id)
        return None
    mlflow.log_metric("best_val_loss", best)
    log_stage_figures(method, model, datasets, None, None, config)
    return model.encoder, best


def log_stage_figures(method: Method, model, datasets, stage: str | None, history: dict | None, config: dict) -> None:
    """Log the two views of a few patches, the stain channels with their predictions, and learning curves."""
    label = f"{method.name} {stage}" if stage else method.name
    crops = datasets.validation_crops[:4]
    last = method.stages[-1]
    view_1, view_2 = preview_views(last, crops, stage_config(config, last.name))
    title = f"{label}: two views with perturbed stains, as the {last.name} stage sees them"
    figures = {"figures/views.png": views_figure(view_1, view_2, title=title)}
    if hasattr(model, "cross_stain_panels"):
        panels = model.cross_stain_panels(crops.astype("float32") / 255.0)
        figures["figures/stain_channels.png"] = stain_channels_figure(panels, title=f"{label}: stain channels and cross-stain predictions")
    if history:
        figures["figures/learning_curves.png"] = learning_curves_figure(history, title=f"{label} pre-training")
    for path, figure in figures.items():
        mlflow.log_figure(figure, path)
        close(figure)


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
