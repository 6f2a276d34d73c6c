"""Registering pre-trained encoders with their lineage."""

from __future__ import annotations

import hashlib
import logging

import mlflow
from mlflow.tracking import MlflowClient

from registry.names import CHAMPION, encoder_model_name
from registry.scores import ScoreRecord
from registry.versions import alias_version, register_version, set_alias
from training.config import to_yaml

logger = logging.getLogger(__name__)

# MLflow's limit on a tag value (MLflow 3.17.2); longer configurations are logged as
# the run's config.yaml and referenced by digest only.
_MAX_TAG_LENGTH = 5000


def lineage_tags(method: str, stains: str, dataset_digest: str, config: dict, run_id: str) -> dict[str, str]:
    """Return the tags every encoder version carries: what made it, from which data, in which run.

    The resolved configuration is the tag ``config`` when it fits a tag, and always
    the source run's artifact ``config.yaml``, named by ``config_artifact``.
    """
    config_text = to_yaml(config)
    tags = {
        "method": method,
        "stains": stains,
        "dataset_digest": dataset_digest,
        "source_run_id": run_id,
        "epochs": str(config["train"]["epochs"]),
        "config_digest": hashlib.sha256(config_text.encode()).hexdigest()[:16],
        "config_artifact": f"runs:/{run_id}/config.yaml",
    }
    if len(config_text) <= _MAX_TAG_LENGTH:
        tags["config"] = config_text
    return tags


def register_encoder(
    model_info,
    method: str,
    stains: str,
    dataset_digest: str,
    config: dict,
    name: str | None = None,
    score: float | None = None,
    score_name: str | None = None,
    selection: ScoreRecord | None = None,
    claim_champion: bool = True,
    client: MlflowClient | None = None,
):
    """Register a logged encoder as a new version of ``unet-encoder-<method>`` (or ``name``).

    ``selection``, a score measured under the selection protocol, is written with the
    lineage tags at creation. With ``claim_champion`` the first version of a model
    gets the alias ``champion`` before any measurement, so ``name@champion`` resolves
    at once. Later versions leave the alias alone until ``promote`` measures them.
    """
    client = client or MlflowClient()
    name = name or encoder_model_name(method)
    run_id = mlflow.active_run().info.run_id
    tags = lineage_tags(method, stains, dataset_digest, config, run_id)
    if score is not None and score_name:
        tags[score_name] = f"{score:.6g}"
    if selection is not None:
        tags.update(selection.tags())
    version = register_version(
        model_info.model_uri, name, run_id, tags,
        description=f"{method} encoder pre-trained on stains {stains} (run {run_id}).",
        model_id=getattr(model_info, "model_id", None), client=client,
    )
    mlflow.set_tags({"registered_model_name": name, "registered_model_version": version.version})
    if claim_champion and alias_version(name, CHAMPION, client) is None:
        set_alias(name, CHAMPION, version.version, client)
    return version
