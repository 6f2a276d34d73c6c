"""Loading registered models by name, alias, version or any MLflow model URI.

Accepted references:

* ``unet-encoder-simclr``: the version behind the alias ``champion``;
* ``unet-encoder-simclr@candidate``: the version behind another alias;
* ``unet-encoder-simclr/3``: version 3;
* any URI with a scheme: ``models:/...``, ``runs:/<run>/<path>``, ``file://...``, ``s3://...``.

Registered references are resolved to a fixed version first, so a run that records
the resolved version stays reproducible after the alias moves.
"""

from __future__ import annotations

import importlib
import logging
import re
from dataclasses import dataclass, field

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from registry.names import CHAMPION, validate_alias

logger = logging.getLogger(__name__)

_NAME_VERSION = re.compile(r"^(?P<name>[^@/]+)/(?P<version>\d+)$")
_NAME_ALIAS = re.compile(r"^(?P<name>[^@/]+)@(?P<alias>[^@/]+)$")
_NAME_ONLY = re.compile(r"^[^@/:]+$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")

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


def _registered_overview(client: MlflowClient, limit: int = 20) -> str:
    models = client.search_registered_models(max_results=limit)
    if not models:
        return "The registry holds no models yet; run `mlflow run . -e pretrain` first."
    lines = []
    for model in models:
        aliases = ", ".join(f"{alias}->v{version}" for alias, version in sorted((model.aliases or {}).items())) or "no aliases"
        latest = max((int(v.version) for v in model.latest_versions or []), default=0)
        lines.append(f"  {model.name} (latest version {latest}; {aliases})")
    return "Registered models:\n" + "\n".join(lines)


def _model_overview(client: MlflowClient, name: str) -> str:
    versions = client.search_model_versions(f"name='{name}'", max_results=50)
    numbers = ", ".join(sorted((v.version for v in versions), key=int)) or "none"
    aliases = client.get_registered_model(name).aliases or {}
    alias_text = ", ".join(f"{a}->v{v}" for a, v in sorted(aliases.items())) or "none"
    return f"{name} has versions {numbers} and aliases {alias_text}."


def _require_model(client: MlflowClient, name: str) -> None:
    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise ModelNotFoundError(f"Registered model {name!r} not found. {_registered_overview(client)}") from None
        raise


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

    _require_model(client, name)
    if alias is not None:
        validate_alias(alias)
        try:
            found = client.get_model_version_by_alias(name, alias)
        except MlflowException:
            raise ModelNotFoundError(f"Alias {alias!r} not found. {_model_overview(client, name)}") from None
    else:
        try:
            found = client.get_model_version(name, version)
        except MlflowException:
            raise ModelNotFoundError(f"Version {version} not found. {_model_overview(client, name)}") from None
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


def load_model(reference: str, client: MlflowClient | None = None):
    """Load any Keras model by reference; return (model, resolved ModelReference)."""
    import mlflow

    resolved = resolve_reference(reference, client)
    _register_custom_objects()
    logger.info("Loading %s (resolved to %s).", reference, resolved.uri)
    model = mlflow.keras.load_model(resolved.uri)
    return model, resolved


def load_encoder(reference: str, client: MlflowClient | None = None):
    """Load an encoder by reference and check the encoder contract; return (encoder, reference)."""
    model, resolved = load_model(reference, client)
    outputs = model.outputs if hasattr(model, "outputs") else None
    if not outputs or len(outputs) < 2 or model.inputs[0].shape[-1] != 3:
        raise ValueError(
            f"{reference} ({resolved.uri}) is not an encoder: an encoder takes an RGB batch and returns a list of "
            "feature maps (skip connections, then the bottleneck). Pass an unet-encoder-<method> model."
        )
    return model, resolved
