"""Listing registered encoders with their versions, aliases, scores and lineage."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import PurePath

from mlflow.tracking import MlflowClient

from registry.loading import quote_filter_value, require_model
from registry.names import ENCODER_PREFIX
from registry.scores import ScoreRecord


@dataclass
class VersionRow:
    """One encoder version as the listing shows it."""

    model: str
    version: str
    aliases: str
    method: str
    stains: str
    epochs: str
    dataset_digest: str
    source_run_id: str
    score: str
    protocol: str
    protocol_key: str
    created: str


COLUMNS = ("model", "version", "aliases", "method", "stains", "epochs", "dataset_digest", "source_run_id", "score", "protocol", "protocol_key", "created")
HEADERS = {"dataset_digest": "dataset", "source_run_id": "source run", "protocol_key": "key"}


def encoder_versions(client: MlflowClient | None = None, model: str | None = None) -> list[VersionRow]:
    """Return a row per version of ``model``, or of every ``unet-encoder-*`` model.

    The score and protocol come from the selection tags only when the protocol key
    tag is present, so a half-written score shows as unscored (``-``).
    """
    client = client or MlflowClient()
    if model:
        require_model(client, model)
        models = [client.get_registered_model(model)]
    else:
        models = sorted(
            client.search_registered_models(filter_string=f"name LIKE '{ENCODER_PREFIX}%'"), key=lambda m: m.name,
        )
    rows = []
    for registered in models:
        aliases_by_version: dict[str, list[str]] = {}
        for alias, version in (registered.aliases or {}).items():
            aliases_by_version.setdefault(str(version), []).append(alias)
        versions = client.search_model_versions(f"name={quote_filter_value(registered.name)}")
        for version in sorted(versions, key=lambda v: int(v.version)):
            tags = version.tags or {}
            record = ScoreRecord.from_tags(tags)
            created = datetime.fromtimestamp(version.creation_timestamp / 1000, tz=timezone.utc)
            rows.append(VersionRow(
                model=registered.name,
                version=str(version.version),
                aliases=",".join(sorted(aliases_by_version.get(str(version.version), []))),
                method=tags.get("method", ""),
                stains=tags.get("stains", ""),
                epochs=tags.get("epochs", ""),
                dataset_digest=tags.get("dataset_digest", ""),
                source_run_id=tags.get("source_run_id", version.run_id or ""),
                score=f"{record.score:.4f}" if record else "-",
                protocol=f"{record.protocol} ({_config_label(record.config)})" if record else "-",
                protocol_key=record.key if record else "-",
                created=created.strftime("%Y-%m-%d %H:%M"),
            ))
    return rows


def _config_label(config: str) -> str:
    """Shorten an overlay given as a file path to its file name."""
    return PurePath(config).name if "/" in config else config


def format_table(rows: list[VersionRow]) -> str:
    """Render rows as a plain-text table with aligned columns."""
    if not rows:
        return f"No registered encoders ({ENCODER_PREFIX}*) found."
    cells = [[HEADERS.get(column, column) for column in COLUMNS]]
    cells += [[str(getattr(row, column)) or "-" for column in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def format_markdown(rows: list[VersionRow]) -> str:
    """Render rows as a Markdown table."""
    header = [HEADERS.get(column, column) for column in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(getattr(row, column)) or "-" for column in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def format_json(rows: list[VersionRow]) -> str:
    return json.dumps([asdict(row) for row in rows], indent=2)


__all__ = ["VersionRow", "encoder_versions", "format_table", "format_markdown", "format_json"]
