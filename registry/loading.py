"""Loading registered models by name, alias, version or any MLflow model URI.

Accepted references:

* ``unet-encoder-simclr``: the version behind the alias ``champion``;
* ``unet-encoder-simclr@candidate``: the version behind another alias;
* ``unet-encoder-simclr/3``: version 3;
* ``unet-encoder-simclr/latest``: the newest version;
* any URI with a scheme: ``models:/...``, ``runs:/<run>/<path>``, ``file://...``, ``s3://...``.

Registered references are resolved to a fixed version first, so a run that records
the resolved version stays reproducible after the alias moves.
"""

from __future__ import annotations

import importlib
import logging
import re
from dataclasses import dataclass, field

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from registry.names import CHAMPION, validate_alias
from tracking.runs import log_params_once

logger = logging.getLogger(__name__)

_NAME_VERSION = re.compile(r"^(?P<name>[^@/]+)/(?P<version>\d+|latest)$")
_NAME_ALIAS = re.compile(r"^(?P<name>[^@/]+)@(?P<alias>[^@/]+)$")
_NAME_ONLY = re.compile(r"^[^@/:]+$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")

# Error codes of a missing version or alias. The SQL store of MLflow 3.17.2 raises
# RESOURCE_DOES_NOT_EXIST for a version and INVALID_PARAMETER_VALUE for an alias.
_NOT_FOUND_CODES = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")

# Modules whose import registers custom Keras layers that some encoders need.
_CUSTOM_OBJECT_MODULES = ("training.stain",)


class ModelNotFoundError(LookupError):
    """A registered model, version or alias that does not exist, with what does exist."""


@dataclass
class ModelReference:
    """A model reference resolved against the registry."""

    reference: str
    uri: str
    name: str | None = None
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None
    tags: dict = field(default_factory=dict)

    def as_params(self, prefix: str) -> dict[str, str]:
        """Params a consuming run logs, so it stays pinned when the alias moves."""
        params = {f"{prefix}_uri": self.uri}
        if self.name:
            params[f"{prefix}_name"] = self.name
            params[f"{prefix}_version"] = str(self.version)
        if self.alias:
            params[f"{prefix}_alias"] = self.alias
        if self.run_id:
            params[f"{prefix}_source_run_id"] = self.run_id
        return params


def quote_filter_value(name: str) -> str:
    """Quote a model name for an MLflow search filter string."""
    return "'" + name.replace("'", "\\'") + "'"


def model_overview(client: MlflowClient, name: str) -> str:
    """Describe one registered model's versions and aliases in one line."""
    versions = client.search_model_versions(f"name={quote_filter_value(name)}")
    numbers = ", ".join(sorted((str(v.version) for v in versions), key=int)) or "none"
    aliases = client.get_registered_model(name).aliases or {}
    alias_text = ", ".join(f"{alias} -> version {version}" for alias, version in sorted(aliases.items())) or "none"
    return f"{name}: versions {numbers}; aliases {alias_text}"


def registry_overview(client: MlflowClient, limit: int = 20) -> str:
    """Describe up to ``limit`` registered models with their versions and aliases."""
    models = client.search_registered_models(max_results=limit)
    if not models:
        return "The registry contains no models yet; register an encoder with `mlflow run . -e pretrain` first."
    lines = [f"  {model_overview(client, model.name)}" for model in models]
    more = f"\n  (only the first {limit} models are shown)" if len(models) == limit else ""
    return "Registered models:\n" + "\n".join(lines) + more


def require_model(client: MlflowClient, name: str) -> None:
    """Raise ModelNotFoundError, listing the registered models, when ``name`` is not registered."""
    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise ModelNotFoundError(f"Registered model {name!r} not found. {registry_overview(client)}") from None
        raise


def _latest_version(client: MlflowClient, name: str) -> str:
    versions = client.search_model_versions(f"name={quote_filter_value(name)}")
    if not versions:
        raise ModelNotFoundError(f"Registered model {name!r} has no versions yet. {registry_overview(client)}")
    return str(max(int(v.version) for v in versions))


def resolve_reference(reference: str, client: MlflowClient | None = None) -> ModelReference:
    """Resolve a reference to a URI and, for registered models, a fixed version."""
    client = client or MlflowClient()
    reference = reference.strip()
    if not reference:
        raise ValueError("Empty model reference: give a registered name, name@alias, name/version or a model URI.")

    name = version = alias = None
    if reference.startswith("models:/"):
        body = reference[len("models:/") :]
        if match := _NAME_VERSION.match(body):
            name, version = match["name"], match["version"]
        elif match := _NAME_ALIAS.match(body):
            name, alias = match["name"], match["alias"]
        elif _NAME_ONLY.match(body) and not body.startswith("m-"):
            raise ValueError(f"Model URI {reference!r} names no version or alias: use models:/{body}@{CHAMPION} or models:/{body}/<version>.")
        else:
            return ModelReference(reference, reference)
    elif _SCHEME.match(reference):
        return ModelReference(reference, reference)
    elif match := _NAME_VERSION.match(reference):
        name, version = match["name"], match["version"]
    elif match := _NAME_ALIAS.match(reference):
        name, alias = match["name"], match["alias"]
    elif _NAME_ONLY.match(reference):
        name, alias = reference, CHAMPION
    else:
        raise ValueError(
            f"Model reference {reference!r} is not understood: give a registered name, name@alias, name/version "
            "or a model URI such as models:/unet-encoder-simclr@champion."
        )

    # The alias rules are checked before the registry is contacted.
    if alias is not None:
        validate_alias(alias)
    require_model(client, name)
    if alias is not None:
        try:
            found = client.get_model_version_by_alias(name, alias)
        except MlflowException as error:
            if error.error_code not in _NOT_FOUND_CODES:
                raise
            raise ModelNotFoundError(
                f"Alias {alias!r} of {name!r} not found. {model_overview(client, name)}. "
                f"Pass one of these aliases or versions, or set the alias with `mlflow run . -e promote -P model={name}`."
            ) from None
    else:
        if version == "latest":
            version = _latest_version(client, name)
        try:
            found = client.get_model_version(name, version)
        except MlflowException as error:
            if error.error_code not in _NOT_FOUND_CODES:
                raise
            raise ModelNotFoundError(f"Version {version} of {name!r} not found. {model_overview(client, name)}.") from None
    return ModelReference(
        reference=reference,
        uri=f"models:/{name}/{found.version}",
        name=name,
        version=str(found.version),
        alias=alias,
        run_id=found.run_id,
        tags=dict(found.tags or {}),
    )


def _register_custom_objects() -> None:
    for module in _CUSTOM_OBJECT_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError:
            logger.debug("Module %s not available; its custom layers are not registered.", module)


def record_resolution(resolved: ModelReference, prefix: str) -> None:
    """Log the resolved version as params of the active run, if one is active.

    The params name the fixed version behind an alias at load time, so the run can
    be reproduced after the alias moves.
    """
    if mlflow.active_run() is None:
        return
    log_params_once(resolved.as_params(prefix))


def load_model(reference: str | ModelReference, client: MlflowClient | None = None, record_as: str | None = "model_resolved"):
    """Load any Keras model by reference, returning (model, resolved ModelReference).

    ``reference`` may also be a :class:`ModelReference` that :func:`resolve_reference`
    returned earlier, so a job can check its inputs before it starts working.
    With an active run and ``record_as`` set, the resolved URI, name, version and
    alias are logged as params ``<record_as>_uri``, ``<record_as>_version`` and so on.
    """
    resolved = reference if isinstance(reference, ModelReference) else resolve_reference(reference, client)
    _register_custom_objects()
    logger.info("Loading %s (resolved to %s).", resolved.reference, resolved.uri)
    model = mlflow.keras.load_model(resolved.uri)
    if record_as:
        record_resolution(resolved, record_as)
    return model, resolved


def load_encoder(reference: str | ModelReference, client: MlflowClient | None = None, record_as: str | None = "encoder_resolved"):
    """Load an encoder by reference and check the encoder contract, returning (encoder, reference).

    The default reference form ``unet-encoder-simclr`` loads the version behind the
    alias ``champion``. Recording works as in :func:`load_model`.
    """
    model, resolved = load_model(reference, client, record_as)
    outputs = model.outputs if hasattr(model, "outputs") else None
    if not outputs or len(outputs) < 2 or model.inputs[0].shape[-1] != 3:
        raise ValueError(
            f"{resolved.reference} ({resolved.uri}) is not an encoder: an encoder takes an RGB batch and returns a list of "
            "feature maps (skip connections, then the bottleneck). Pass an unet-encoder-<method> model."
        )
    return model, resolved
