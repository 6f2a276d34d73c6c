"""Entry point ``tune``: Optuna search over ``segment`` or ``pretrain``, every trial a nested run.

Trials run in this process through the same functions as the two entry points, with a
pruning callback that receives every epoch's objective metric. Workers that pass the
same ``storage`` and ``study_name`` share one study and one parent run. Running the
command again with them resumes an interrupted search.
"""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import mlflow
import optuna
import tensorflow as tf
from mlflow.tracking import MlflowClient

from mlproject.common import UsageError, demo_paths, entry_run, optional, parser
from mlproject.pretrain import prepare_pretraining, run_single_stage
from mlproject.segment import evaluate_and_log_model, lineage_tags, prepare_splits, train_segmentation
from registry.encoders import register_encoder
from registry.loading import ModelReference, resolve_reference
from registry.names import SEGMENTATION_MODEL, encoder_model_name
from registry.versions import register_version
from tracking import tuning
from tracking.runs import log_params_once
from tracking.models import encoder_signature, log_keras_model
from tracking.search_space import SearchSpace, load_search_space
from training import config as configuration
from training.methods import available, get_method

logger = logging.getLogger(__name__)

TARGETS = ("segment", "pretrain")

# Errors that fail one trial while the search goes on: invalid sampled combinations
# (ValueError), divergence (ArithmeticError), and running out of memory. Anything
# else, a tracking-server error included, stops this worker.
TRIAL_ERRORS: tuple[type[Exception], ...] = (ValueError, ArithmeticError, MemoryError, tf.errors.OpError)

# Trial user attributes that hold what registering a trial's model needs.
MODEL_URI_ATTR = "model_uri"
MODEL_ID_ATTR = "model_id"
LINEAGE_ATTR = "lineage"


def parse_args(argv=None):
    p = parser("Search hyperparameters of segment or pretrain with Optuna; every trial is a nested MLflow run.")
    p.add_argument("--target", default="segment", help=f"Entry point to tune: {', '.join(TARGETS)}.")
    p.add_argument("--n-trials", default="10", help="Number of trials in the study when the search ends, counted over all workers and resumed runs.")
    p.add_argument("--storage", default="", help="Optuna RDB storage URL; empty: optuna.db beside MLflow's SQLite file. Give PostgreSQL passwords through PGPASSWORD.")
    p.add_argument("--study-name", default="", help="Study to create or join; empty: a new name <target>-<date>-<time>.")
    p.add_argument("--search-space", default="", help="Search space: a shipped name or a YAML file path; empty: search_space_<target>.")
    p.add_argument("--config", default="small", help="Configuration overlay of every trial: a shipped name (small, study) or a YAML file path.")
    p.add_argument("--epochs", default="", help="Epochs per trial; empty: from the configuration.")
    p.add_argument("--labelled-dir", default="", help="segment: labelled images; empty: the scikit-image demo.")
    p.add_argument("--encoder", default="none", help="segment: encoder to fine-tune (none: train from scratch), as for the segment entry point.")
    p.add_argument("--label-fraction", default="", help="segment: share of training images whose labels are used; empty: from the configuration.")
    p.add_argument("--data-dir", default="", help="pretrain: unlabelled images; empty: the scikit-image demo.")
    p.add_argument("--method", default="simclr", help=f"pretrain: self-supervised method, one of {', '.join(available())}.")
    p.add_argument("--stain", default="", help="segment: train on this stain only; pretrain: use this domain folder only. Empty: all.")
    p.add_argument("--register-as", default="", help="Registered name of the best trial's model; empty: unet-glomeruli or unet-encoder-<method>; none: do not register.")
    return p.parse_args(argv)


@dataclass
class TuneJob:
    """Settings that every trial of one worker shares: the target, its data, the search space."""

    target: str
    task: str
    overlay: str
    overrides: dict
    space: SearchSpace
    data_dir: str
    encoder: str = "none"
    encoder_resolved: ModelReference | None = None
    method: str = "simclr"
    stain: str | None = None
    register_as: str | None = None


@dataclass
class EncoderTrial:
    """An encoder trained by one pretrain trial, with the lineage that registering it needs."""

    encoder: keras.Model
    checkpoints: object
    config: dict
    stains: str
    dataset_digest: str


def parse_n_trials(text: str) -> int:
    try:
        n_trials = int(str(text).strip())
    except ValueError:
        raise UsageError(f"n_trials={text!r} is invalid: give a whole number of trials, such as 10.") from None
    if n_trials < 1:
        raise UsageError(f"n_trials={n_trials} is invalid: a search needs at least 1 trial.")
    return n_trials


def prepare_job(args) -> TuneJob:
    """Check the parameters, the data and the search space before any study exists."""
    if args.target not in TARGETS:
        raise UsageError(f"target={args.target!r} cannot be tuned. Choose one of {', '.join(TARGETS)}.")
    space = load_search_space(args.search_space, args.target)

    if args.target == "segment":
        task = "segment"
        overrides = {"train.epochs": args.epochs, "segment.label_fraction": args.label_fraction, "segment.stain": args.stain}
        data_dir = optional(args.labelled_dir)
        if data_dir is None:
            _, data_dir = demo_paths()
            logger.info("No labelled_dir given: tuning on the scikit-image IHC demo task in %s.", data_dir)
            mlflow.set_tag("dataset", "skimage-immunohistochemistry-demo")
    else:
        if args.method not in available():
            raise UsageError(f"method={args.method!r} is not available. Choose one of {', '.join(available())}.")
        if get_method(args.method).stages:
            # TODO: prune and score multi-stage methods (HR-CS-CO) per stage; until then tune rejects them.
            raise UsageError(
                f"method={args.method} trains in stages, which tune cannot search yet. "
                "Tune a one-stage method (simclr, byol), or run pretrain per stage."
            )
        task = args.method
        overrides = {"train.epochs": args.epochs}
        data_dir = optional(args.data_dir)
        if data_dir is None:
            data_dir, _ = demo_paths()
            logger.info("No data_dir given: tuning pre-training on the scikit-image IHC demo image in %s.", data_dir)
            mlflow.set_tag("dataset", "skimage-immunohistochemistry-demo")

    fixed = sorted(key for key, value in overrides.items() if value not in (None, "") and key in space.params)
    if fixed:
        raise UsageError(
            f"{', '.join(fixed)} is both set by a parameter and searched by {space.source}. "
            "Drop the parameter or remove the key from the search space."
        )
    base = configuration.resolve(task, args.config, overrides)
    space.check_keys(base)

    stain = optional(args.stain)
    encoder_resolved = None
    if args.target == "segment":
        # Reports a missing folder, unreadable layout or unknown stain once, not once per trial.
        prepare_splits(data_dir, base)
        # Every trial fine-tunes the version resolved here, even if the alias moves meanwhile.
        encoder_reference = optional(args.encoder)
        encoder_resolved = resolve_reference(encoder_reference) if encoder_reference else None
    elif not Path(data_dir).is_dir():
        raise UsageError(f"data_dir={data_dir} is not a folder: give the folder of unlabelled images.")

    # optional() maps "none" to None as well, so only the raw value separates "none" from empty.
    register_as = args.register_as.strip()
    if register_as.lower() == "none":
        register_as = None
    elif not register_as:
        register_as = SEGMENTATION_MODEL if args.target == "segment" else encoder_model_name(args.method)
    return TuneJob(
        target=args.target, task=task, overlay=args.config, overrides=overrides, space=space, data_dir=str(data_dir),
        encoder=args.encoder, encoder_resolved=encoder_resolved, method=args.method, stain=stain, register_as=register_as,
    )


def train_trial(job: TuneJob, trial: optuna.Trial) -> float:
    """Train one trial of ``job`` in the active run and return its objective value.

    The value is the best per-epoch value of the objective metric, and the model keeps
    that epoch's weights. A trial that beats every trial completed so far logs its
    model, so the study's best trial always has one to register.
    """
    objective = job.space.objective
    sampled = job.space.suggest(trial)
    config = configuration.resolve(job.task, job.overlay, {**job.overrides, **sampled})
    pruning = tuning.PruningCallback(trial, objective.metric)
    try:
        if job.target == "segment":
            trained = train_segmentation(
                config, job.data_dir, job.encoder, job.encoder_resolved, callbacks=[pruning], monitor=objective.metric, mode=objective.mode,
            )
        else:
            images, digest, stains = prepare_pretraining(config, job.method, job.data_dir, job.stain)
            encoder, checkpoints = run_single_stage(
                get_method(job.method), config, images, callbacks=[pruning], monitor=objective.metric, mode=objective.mode,
            )
            trained = EncoderTrial(encoder, checkpoints, config, stains, digest)
        checkpoints = trained.checkpoints
        if checkpoints.best_epoch is None:
            raise tuning.NonFiniteObjectiveError(f"Trial {trial.number} reported no finite {objective.metric}, so it has no objective value.")
        value = float(checkpoints.best)

        best = tuning.best_trial(trial.study, objective)
        if objective.is_better(value, None if best is None else best.value):
            _log_candidate_model(job, trial, trained)
        return value
    finally:
        # Free the trial's graph and weights before the next trial builds its own.
        keras.backend.clear_session()


def _log_candidate_model(job: TuneJob, trial: optuna.Trial, trained) -> None:
    if job.target == "segment":
        evaluation, info = evaluate_and_log_model(trained)
        trial.set_user_attr(LINEAGE_ATTR, lineage_tags(trained, evaluation))
    else:
        info = log_keras_model(trained.encoder, "encoder", encoder_signature(trained.encoder))
        trial.set_user_attr(LINEAGE_ATTR, {"stains": trained.stains, "dataset_digest": trained.dataset_digest, "config": trained.config})
    trial.set_user_attr(MODEL_URI_ATTR, info.model_uri)
    trial.set_user_attr(MODEL_ID_ATTR, info.model_id)


def register_best(job: TuneJob, best: optuna.trial.FrozenTrial, parent: tuning.ParentRun, client: MlflowClient) -> None:
    """Register the best trial's logged model under ``job.register_as``, once per trial run."""
    run_id, model_uri = best.user_attrs.get(tuning.RUN_ID_ATTR), best.user_attrs.get(MODEL_URI_ATTR)
    if not model_uri:
        logger.warning("Best trial %d (run %s) logged no model, so nothing was registered.", best.number, run_id)
        return
    existing = client.search_model_versions(f"name='{job.register_as}' and run_id='{run_id}'")
    if existing:
        version = existing[0]
        logger.info("The best trial's model is already %s version %s.", job.register_as, version.version)
    else:
        # NOTE: two workers whose last trials end at the same moment can both pass the
        # check above. The run is then registered twice, and the second version
        # duplicates the first.
        metric = job.space.objective.metric
        tune_tags = {
            "tune_study": parent.study_name,
            "tune_trial": str(best.number),
            "tune_parent_run_id": parent.run_id,
            f"best_{metric}": f"{best.value:.6g}",
        }
        lineage = best.user_attrs.get(LINEAGE_ATTR, {})
        if job.target == "segment":
            version = register_version(
                model_uri, job.register_as, run_id, {**lineage, **tune_tags},
                description=f"Glomerulus UNet, best trial of study {parent.study_name}", model_id=best.user_attrs.get(MODEL_ID_ATTR),
            )
            client.set_tag(run_id, "registered_model_name", job.register_as)
            client.set_tag(run_id, "registered_model_version", version.version)
        else:
            config = lineage.get("config", {})
            method = get_method(job.method)
            method_tags = method.encoder_tags(config) if method.encoder_tags else {}
            version = register_encoder(
                mlflow.models.get_model_info(model_uri), method=job.method, stains=lineage.get("stains", "all"),
                dataset_digest=lineage.get("dataset_digest", ""), config=config, name=job.register_as,
                score=best.value, score_name=f"best_{metric}", client=client, run_id=run_id, extra_tags={**method_tags, **tune_tags},
            )
    client.set_tag(parent.run_id, "registered_model_name", job.register_as)
    client.set_tag(parent.run_id, "registered_model_version", version.version)


def open_study(job: TuneJob, storage: optuna.storages.RDBStorage, study_name: str, worker_key: str) -> tuple[optuna.Study, bool]:
    """Create the study, or load it when it exists, and return (study, created)."""
    objective = job.space.objective
    sampler, pruner = job.space.build_sampler(), job.space.build_pruner()
    try:
        study = optuna.create_study(storage=storage, study_name=study_name, direction=objective.direction, sampler=sampler, pruner=pruner)
    except optuna.exceptions.DuplicatedStudyError:
        # A joining worker mixes its identity into the sampler seed, so it does not
        # draw the same random start-up trials as the creator.
        study = optuna.load_study(study_name=study_name, storage=storage, sampler=job.space.build_sampler(worker_key), pruner=pruner)
        _check_joined_study(job, study)
        logger.info("Loaded study %s with %d trial(s).", study_name, len(study.trials))
        return study, False
    study.set_user_attr("target", job.target)
    study.set_user_attr("objective_metric", objective.metric)
    study.set_user_attr("search_space", job.space.to_yaml())
    logger.info("Created study %s: %s %s.", study_name, objective.direction, objective.metric)
    return study, True


def _check_joined_study(job: TuneJob, study: optuna.Study) -> None:
    objective = job.space.objective
    attrs = study.user_attrs
    if attrs.get("target", job.target) != job.target:
        raise UsageError(f"Study {study.study_name} tunes {attrs['target']}, not {job.target}: pass target={attrs['target']} or another study_name.")
    if attrs.get("objective_metric", objective.metric) != objective.metric or study.direction.name.lower() != objective.direction:
        raise UsageError(
            f"Study {study.study_name} optimises {study.direction.name.lower()} {attrs.get('objective_metric')}, but {job.space.source} "
            f"asks to {objective.direction} {objective.metric}. Use the study's search space or another study_name."
        )
    if attrs.get("search_space") not in (None, job.space.to_yaml()):
        logger.warning("Study %s was created with another search space than %s; this worker samples from its own.", study.study_name, job.space.source)


def run(args) -> None:
    n_trials = parse_n_trials(args.n_trials)
    job = prepare_job(args)
    worker_run_id = mlflow.active_run().info.run_id
    tracking_uri = mlflow.get_tracking_uri()
    storage_url = optional(args.storage) or tuning.default_storage_url(tracking_uri)
    storage_label = tuning.display_url(storage_url)
    study_name = optional(args.study_name) or f"{job.target}-{time.strftime('%Y%m%d-%H%M%S')}"
    log_params_once({"target": job.target, "n_trials": n_trials, "storage": storage_label, "study_name": study_name, "search_space": job.space.source})
    mlflow.set_tags({"tune.target": job.target, tuning.STUDY_TAG: study_name, tuning.STORAGE_TAG: storage_label})

    storage = tuning.open_storage(storage_url)
    study, created = open_study(job, storage, study_name, worker_key=worker_run_id)
    client = MlflowClient()
    parent = tuning.attach_parent_run(study, created, worker_run_id, storage_label, client)
    if created:
        client.log_text(parent.run_id, job.space.to_yaml(), "tuning/search_space.yaml")

    trial_runs = tuning.TrialRuns(parent, job.target, client, worker_run_id)
    objective = trial_runs.objective(lambda trial: train_trial(job, trial))
    try:
        outcome = tuning.run_worker(study, objective, n_trials, TRIAL_ERRORS, trial_runs)
    except KeyboardInterrupt:
        logger.warning("Search interrupted; run the same command again to resume study %s.", study_name)
        tuning.log_study_summary(study, parent, job.space.objective, client)
        mlflow.end_run("KILLED")
        raise

    best = tuning.log_study_summary(study, parent, job.space.objective, client)
    progress = outcome.progress
    complete = progress.counted >= n_trials and not progress.running and not progress.waiting
    if best is not None and job.register_as and complete:
        if outcome.finished_last:
            register_best(job, best, parent, client)
        else:
            logger.info("Another worker finished the study's last trial, so that worker registers the best model.")
    tuning.finish_parent_run(parent, worker_run_id, complete, client)


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None) -> None:
    args = parse_args(argv)
    # SIGTERM (from a scheduler or `kill`) ends the current trial as interrupted, as Ctrl-C does.
    previous_handler = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        with entry_run("tune", tags={"tune.target": args.target}):
            run(args)
    finally:
        signal.signal(signal.SIGTERM, previous_handler)


if __name__ == "__main__":
    main()
