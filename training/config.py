"""YAML configuration: shipped defaults, overlays and single-key overrides.

A resolved configuration is a nested dict built in three layers:

1. the shipped defaults of a task (``training/configs/<task>.yaml``, which may list
   other shipped files under ``include``);
2. an overlay, either the name of a shipped overlay (``small``, ``study``) or the
   path of a user's YAML file;
3. single keys given as dotted names (``train.epochs=3``), usually MLflow parameters.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping

import yaml

CONFIG_DIR = Path(__file__).parent / "configs"


class ConfigError(ValueError):
    """A configuration file or key that cannot be used."""


def _read_yaml(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            content = yaml.safe_load(handle)
    except FileNotFoundError:
        raise ConfigError(f"Configuration file not found: {path}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"Configuration file {path} is not valid YAML: {error}") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ConfigError(
            f"Configuration file {path} must hold a mapping at the top level, "
            f"found {type(content).__name__}."
        )
    return content


def merge(base: Mapping, overlay: Mapping) -> dict:
    """Return ``base`` updated by ``overlay``, merging nested mappings key by key."""
    merged = copy.deepcopy(dict(base))
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_shipped(name: str) -> dict:
    """Load a shipped file by name, resolving its ``include`` list first."""
    path = CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        shipped = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise ConfigError(
            f"No shipped configuration named {name!r}. Shipped: {', '.join(shipped)}; "
            "or pass the path of a YAML file."
        )
    content = _read_yaml(path)
    resolved: dict = {}
    for included in content.pop("include", []):
        resolved = merge(resolved, load_shipped(included))
    return merge(resolved, content)


def load_overlay(overlay: str | None) -> dict:
    """Load an overlay given as a shipped name or a file path; empty for None or ''."""
    if not overlay:
        return {}
    if overlay.endswith((".yaml", ".yml")) or "/" in overlay:
        return _read_yaml(Path(overlay))
    return load_shipped(overlay)


def parse_value(text: str) -> Any:
    """Parse a command-line value with YAML rules, so ``3`` is an int and ``true`` a bool."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def set_key(config: dict, dotted_key: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested dict; the key must already exist in the defaults."""
    parts = dotted_key.split(".")
    node = config
    for depth, part in enumerate(parts[:-1]):
        if not isinstance(node.get(part), dict):
            prefix = ".".join(parts[: depth + 1])
            raise ConfigError(f"Unknown configuration section {prefix!r} in key {dotted_key!r}.")
        node = node[part]
    if parts[-1] not in node:
        known = ", ".join(sorted(node))
        raise ConfigError(
            f"Unknown configuration key {dotted_key!r}. Keys at that level: {known}."
        )
    node[parts[-1]] = value


def resolve(task: str, overlay: str | None = None, overrides: Mapping[str, Any] | None = None) -> dict:
    """Build the configuration of ``task`` from defaults, an overlay and overrides.

    Overrides whose value is None or '' are skipped, so unset MLflow parameters keep
    the configured value.
    """
    config = merge(load_shipped(task), load_overlay(overlay))
    for key, value in (overrides or {}).items():
        if value is None or value == "":
            continue
        set_key(config, key, parse_value(value) if isinstance(value, str) else value)
    return config


def flatten(config: Mapping, prefix: str = "") -> dict[str, Any]:
    """Flatten nested keys to dotted names, as logged to MLflow params."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def to_yaml(config: Mapping) -> str:
    return yaml.safe_dump(dict(config), sort_keys=False)
