"""Entry point ``main``: pre-train, register, then fine-tune with the encoder pulled back by name.

Both steps run as MLflow Projects child runs of this run, so the UI shows one parent
with a ``pretrain`` child and a ``segment`` child.
"""

from __future__ import annotations

import logging

import mlflow
from mlflow.tracking import MlflowClient

from mlproject.common import PROJECT_ROOT, UsageError, demo_paths, entry_run, optional, parser
from tracking.runs import log_params_once

logger = logging.getLogger(__name__)


def parse_args(argv=None):
    p = parser("Pre-train an encoder, register it, and fine-tune a UNet with it, as child runs of one parent run.")
    p.add_argument("--data-dir", default="", help="Unlabelled images for pre-training; empty: the scikit-image demo.")
    p.add_argument("--labelled-dir", default="", help="Labelled images for fine-tuning; empty: the scikit-image demo.")
    p.add_argument("--method", default="simclr")
    p.add_argument("--stain", default="", help="Pre-training domain folder (stain code); empty: all.")
    p.add_argument("--epochs", default="", help="Epochs of both steps; empty: from the configuration.")
    p.add_argument("--batch-size", default="")
    p.add_argument("--patch-size", default="")
    p.add_argument("--label-fraction", default="")
    p.add_argument("--config", default="small")
    p.add_argument("--seed", default="")
    return p.parse_args(argv)


def run_child(entry_point: str, parameters: dict, experiment_id: str) -> str:
    """Run an entry point of this project as a child of the active run; return its run id."""
    parameters = {k: v for k, v in parameters.items() if v not in (None, "")}
    logger.info("Starting child run %s with %s.", entry_point, parameters)
    # NOTE: mlflow.projects.run does not pass the parent's environment manager on,
    # so each child names it; children reuse this process's prepared environment.
    submitted = mlflow.projects.run(
        str(PROJECT_ROOT), entry_point=entry_point, parameters=parameters, env_manager="local",
        experiment_id=experiment_id, synchronous=False,
    )
    succeeded = submitted.wait()
    if not succeeded:
        error = MlflowClient().get_run(submitted.run_id).data.tags.get("error", "see the child run's logs")
        raise UsageError(f"Child run {entry_point} ({submitted.run_id}) failed: {error}")
    return submitted.run_id


def run(args) -> None:
    active = mlflow.active_run()
    experiment_id = active.info.experiment_id
    data_dir, labelled_dir = optional(args.data_dir), optional(args.labelled_dir)
    if data_dir is None or labelled_dir is None:
        demo_unlabelled, demo_labelled = demo_paths()
        data_dir = data_dir or str(demo_unlabelled)
        labelled_dir = labelled_dir or str(demo_labelled)
        mlflow.set_tag("dataset", "skimage-immunohistochemistry-demo")
    log_params_once({"data_dir": data_dir, "labelled_dir": labelled_dir})
    mlflow.set_tag("method", args.method)
    shared = {"epochs": args.epochs, "batch_size": args.batch_size, "patch_size": args.patch_size, "config": args.config, "seed": args.seed}

    pretrain_id = run_child("pretrain", {"method": args.method, "data_dir": data_dir, "stain": args.stain, **shared}, experiment_id)
    tags = MlflowClient().get_run(pretrain_id).data.tags
    encoder_uri = f"models:/{tags['registered_model_name']}/{tags['registered_model_version']}"
    mlflow.set_tags({"pretrain_run_id": pretrain_id, "encoder": encoder_uri})

    segment_id = run_child("segment", {"labelled_dir": labelled_dir, "encoder": encoder_uri, "label_fraction": args.label_fraction, **shared}, experiment_id)
    mlflow.set_tag("segment_run_id", segment_id)
    metrics = MlflowClient().get_run(segment_id).data.metrics
    mlflow.log_metrics({key: value for key, value in metrics.items() if key.startswith("test_f1")})
    logger.info("Main job finished: encoder %s, test_f1 %.4f.", encoder_uri, metrics.get("test_f1", float("nan")))


def main(argv=None) -> None:
    args = parse_args(argv)
    with entry_run("main", tags={"method": args.method}):
        run(args)


if __name__ == "__main__":
    main()
