"""Creating model versions with their lineage tags in one call, and moving aliases."""

from __future__ import annotations

import logging
from typing import Mapping

from mlflow.exceptions import MlflowException
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from registry.names import validate_alias

logger = logging.getLogger(__name__)


def _tag_text(value) -> str:
    return value if isinstance(value, str) else str(value)


def register_version(
    model_uri: str,
    name: str,
    run_id: str,
    tags: Mapping[str, object],
    description: str = "",
    model_id: str | None = None,
    client: MlflowClient | None = None,
) -> ModelVersion:
    """Register ``model_uri`` as a new version of ``name`` with all its tags at once.

    The tags travel in the create request itself, so a version never exists without
    its lineage. The registered model is created on first use.
    """
    client = client or MlflowClient()
    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        try:
            client.create_registered_model(name)
        except MlflowException as race:
            # Another process created it between the two calls.
            if race.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
    version = client.create_model_version(
        name=name,
        source=model_uri,
        run_id=run_id,
        tags={key: _tag_text(value) for key, value in tags.items()},
        description=description,
        model_id=model_id,
    )
    logger.info("Registered %s version %s from run %s.", name, version.version, run_id)
    return version


def replace_version_tags(name: str, version: str | int, tags: Mapping[str, object], commit_tag: str, client: MlflowClient | None = None) -> None:
    """Write ``tags`` on a version so that ``commit_tag`` marks a complete set.

    MLflow sets version tags one at a time, so ``commit_tag`` (one of ``tags``) is
    removed first and written last. A write that fails halfway leaves the version
    without ``commit_tag``, and readers treat it as carrying none of these tags.
    """
    if commit_tag not in tags:
        raise ValueError(f"commit_tag={commit_tag!r} is not among the tags {', '.join(tags)}; pass one of them.")
    client = client or MlflowClient()
    version = str(version)
    current = client.get_model_version(name, version).tags or {}
    if commit_tag in current:
        client.delete_model_version_tag(name, version, commit_tag)
    for key, value in tags.items():
        if key != commit_tag:
            client.set_model_version_tag(name, version, key, _tag_text(value))
    client.set_model_version_tag(name, version, commit_tag, _tag_text(tags[commit_tag]))
    logger.info("Tagged %s version %s with %s.", name, version, ", ".join(f"{k}={v}" for k, v in tags.items()))


def set_alias(name: str, alias: str, version: str | int, client: MlflowClient | None = None) -> None:
    """Point ``name@alias`` at ``version`` after checking the alias against the alias rules."""
    client = client or MlflowClient()
    client.set_registered_model_alias(name, validate_alias(alias), str(version))
    logger.info("Alias %s of %s now points to version %s.", alias, name, version)


def alias_version(name: str, alias: str, client: MlflowClient | None = None) -> ModelVersion | None:
    """Return the version behind ``name@alias``, or None when the alias is not set."""
    client = client or MlflowClient()
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
