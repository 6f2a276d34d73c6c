"""Child runs for the stages of a multi-stage method, and the weights they hand on.

Each stage runs as a child of one parent run and is tagged ``stage=<name>``. A
finished stage logs its weights as ``stage_weights/<name>.weights.h5``; the next stage
downloads them from that run, so it starts from exactly what was logged.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

import keras
import mlflow
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

logger = logging.getLogger(__name__)

STAGE_TAG = "stage"
WEIGHTS_FOLDER = "stage_weights"


def weights_artifact(stage: str) -> str:
    return f"{WEIGHTS_FOLDER}/{stage}.weights.h5"


@contextmanager
def stage_run(parent_run_id: str, stage: str, run_name: str, tags: dict[str, str] | None = None):
    """Start the child run of ``stage`` under ``parent_run_id`` and make it the active run.

    The parent need not be the active run, so a later invocation can add a stage to an
    earlier parent. The child ends FAILED when the block raises.
    """
    client = MlflowClient()
    parent = client.get_run(parent_run_id)
    child = client.create_run(
        parent.info.experiment_id,
        run_name=run_name,
        tags={"mlflow.parentRunId": parent_run_id, STAGE_TAG: stage, **(tags or {})},
    )
    logger.info("Stage %s runs as %s, a child of %s.", stage, child.info.run_id, parent_run_id)
    with mlflow.start_run(run_id=child.info.run_id, nested=True) as run:
        yield run


def find_finished_stage(parent_run_id: str, stage: str) -> Run | None:
    """Return the latest FINISHED child run of ``stage`` under ``parent_run_id``, or None."""
    client = MlflowClient()
    parent = client.get_run(parent_run_id)
    runs = client.search_runs(
        [parent.info.experiment_id],
        filter_string=(
            f"tags.`mlflow.parentRunId` = '{parent_run_id}' and tags.{STAGE_TAG} = '{stage}' "
            "and attributes.status = 'FINISHED'"
        ),
        order_by=["attributes.end_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def log_stage_weights(model: keras.Model, stage: str, folder: Path) -> None:
    """Save ``model``'s weights and log them to the active run for the next stage."""
    path = Path(folder) / Path(weights_artifact(stage)).name
    model.save_weights(path)
    mlflow.log_artifact(str(path), WEIGHTS_FOLDER)


def download_stage_weights(run_id: str, stage: str) -> Path:
    """Download the weights that stage ``stage`` logged in run ``run_id``; return the local path."""
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=weights_artifact(stage)))
