"""Scoring encoder versions under the selection protocol and moving ``champion``.

A promotion runs inside an active MLflow run in four steps:

1. check the alias, the models and the requested versions, before any work;
2. score every version that lacks a score under the protocol key, each in a nested
   run, and write its score tags (the key tag last, see ``replace_version_tags``);
3. choose the champion per model: the best-scoring version, and only when it beats
   the current champion under the same key. A tie or a lower score never moves it;
4. log the comparison table and plot to the active run, then move the aliases, last.

An error in step 1 or 2 leaves every alias where it was.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import mlflow
from mlflow.tracking import MlflowClient

from registry.loading import ModelNotFoundError, load_encoder, model_overview, quote_filter_value, registry_overview, require_model
from registry.names import CHAMPION, ENCODER_PREFIX, validate_alias
from registry.protocol import ProtocolData, score_encoder
from registry.scores import KEY_TAG, ScoreRecord
from registry.versions import alias_version, replace_version_tags, set_alias
from tracking.callbacks import MlflowMetricsLogger
from tracking.figures import close, selection_scores_figure
from tracking.runs import log_config

logger = logging.getLogger(__name__)

ALL_ENCODERS = "all"


@dataclass
class VersionScore:
    """One version's score in a promotion, measured now or read from its tags."""

    name: str
    version: str
    record: ScoreRecord
    measured: bool
    tags: dict = field(default_factory=dict)

    @property
    def score(self) -> float:
        return self.record.score


@dataclass
class Decision:
    """The version an alias points to after comparing scores, with the reason."""

    version: str | None
    moved: bool
    reason: str


@dataclass
class Promotion:
    """The outcome for one registered model."""

    name: str
    alias: str
    previous: str | None
    decision: Decision
    scores: list[VersionScore]


def choose_champion(current: str | None, scores: Mapping[str, float]) -> Decision:
    """Decide where the alias goes, given scores measured under one protocol key.

    The best-scoring version takes the alias only when the alias is unset or the best
    score is strictly higher than the score of the version the alias points to. Among
    equal best scores the lowest version number wins, so a tie never moves the alias.
    """
    if not scores:
        return Decision(current, False, "no version has a score under this protocol")
    best = min(scores, key=lambda version: (-scores[version], int(version)))
    if current is None:
        return Decision(best, True, f"no version held the alias; version {best} scores best ({scores[best]:.4f})")
    if current not in scores:
        raise ValueError(
            f"The alias points to version {current}, which has no score under this protocol, so no candidate can be "
            "compared with it. Score that version together with the candidates."
        )
    if best == current or scores[best] <= scores[current]:
        return Decision(current, False, f"version {current} keeps it ({scores[current]:.4f}); no version scores higher")
    return Decision(
        best, True, f"version {best} scores {scores[best]:.4f}, above version {current} ({scores[current]:.4f})",
    )


def encoder_names(client: MlflowClient) -> list[str]:
    """Return every registered encoder name (``unet-encoder-*``), sorted."""
    models = client.search_registered_models(filter_string=f"name LIKE '{ENCODER_PREFIX}%'")
    return sorted(model.name for model in models)


def resolve_targets(model: str, versions: Sequence[str] | None, client: MlflowClient) -> dict[str, list[str]]:
    """Map each model to promote onto the versions to score; raise before any work.

    ``model`` is one registered name or ``all`` (every ``unet-encoder-*`` model).
    ``versions`` restricts a single model to those versions; by default every version
    is scored. Missing models or versions raise ModelNotFoundError listing what exists.
    """
    if model == ALL_ENCODERS:
        names = encoder_names(client)
        if not names:
            raise ModelNotFoundError(f"No registered encoders ({ENCODER_PREFIX}*) found. {registry_overview(client)}")
        if versions:
            raise ValueError(f"versions={','.join(versions)} needs a single model, but model=all. Name one model, or leave versions empty.")
    else:
        names = [model]
    targets: dict[str, list[str]] = {}
    for name in names:
        require_model(client, name)
        found = sorted((str(v.version) for v in client.search_model_versions(f"name={quote_filter_value(name)}")), key=int)
        if not found:
            raise ModelNotFoundError(f"Registered model {name!r} has no versions to score. {model_overview(client, name)}.")
        if versions:
            missing = [v for v in versions if v not in found]
            if missing:
                raise ModelNotFoundError(f"Version {', '.join(missing)} of {name!r} not found. {model_overview(client, name)}.")
            targets[name] = [v for v in found if v in versions]
        else:
            targets[name] = found
    return targets


def score_reference(reference: str, data: ProtocolData, run_name: str, client: MlflowClient | None = None) -> tuple[ScoreRecord, object]:
    """Score one encoder in a nested run under the protocol, returning (record, evaluation).

    The nested run logs the fine-tuning curves, the protocol's configuration, the
    resolved version and the metric ``selection_score``.
    """
    with mlflow.start_run(run_name=run_name, nested=True) as child:
        run_id = child.info.run_id
        mlflow.set_tags({"selection_protocol": data.protocol.name, "selection_step": "score"})
        encoder, resolved = load_encoder(reference, client)
        log_config(data.config, {
            "selection_protocol": data.protocol.name,
            "selection_protocol_key": data.key,
            "selection_config": data.overlay,
            "labelled_dir": str(data.labelled_dir),
            "n_labelled": len(data.splits.labelled),
            "n_validation": len(data.splits.validation),
        })
        evaluation = score_encoder(encoder, data, callbacks=[MlflowMetricsLogger(run_id)])
        mlflow.log_metric("selection_score", evaluation.pooled)
        mlflow.log_metrics({f"selection_score_{stain}": value for stain, value in evaluation.per_stain.items()})
        logger.info("%s scores %.4f under %s (key %s).", resolved.uri, evaluation.pooled, data.protocol.name, data.key)
    record = ScoreRecord(
        score=evaluation.pooled, protocol=data.protocol.name, key=data.key, config=data.overlay,
        dataset_digest=data.dataset_digest, run_id=run_id,
    )
    return record, evaluation


def _score_versions(name: str, versions: list[str], data: ProtocolData, rescore: bool, client: MlflowClient) -> list[VersionScore]:
    scores = []
    for version in versions:
        tags = dict(client.get_model_version(name, version).tags or {})
        cached = ScoreRecord.from_tags(tags)
        if cached is not None and cached.key == data.key and not rescore:
            logger.info("%s version %s already scores %.4f under key %s; not re-scored.", name, version, cached.score, data.key)
            scores.append(VersionScore(name, version, cached, measured=False, tags=tags))
            continue
        if cached is not None and cached.key != data.key:
            logger.info("%s version %s was scored under key %s, not %s; re-scoring it.", name, version, cached.key, data.key)
        record, _ = score_reference(f"{name}/{version}", data, run_name=f"score {name} v{version}", client=client)
        replace_version_tags(name, version, record.tags(), commit_tag=KEY_TAG, client=client)
        scores.append(VersionScore(name, version, record, measured=True, tags=tags))
    return scores


def promote(
    model: str,
    data: ProtocolData,
    alias: str = CHAMPION,
    versions: Sequence[str] | None = None,
    rescore: bool = False,
    client: MlflowClient | None = None,
) -> list[Promotion]:
    """Score the versions of ``model`` (or ``all`` encoders) and move ``alias`` on measurement.

    The current alias holder is always scored with the requested versions, so the
    comparison happens under one protocol key. Needs an active MLflow run, to which
    the comparison table and plot are logged.
    """
    validate_alias(alias)
    client = client or MlflowClient()
    if mlflow.active_run() is None:
        raise RuntimeError("promote() needs an active MLflow run for its nested scoring runs; start one first.")
    targets = resolve_targets(model, versions, client)
    holders = {name: alias_version(name, alias, client) for name in targets}

    promotions = []
    for name, requested in targets.items():
        holder = holders[name]
        previous = str(holder.version) if holder is not None else None
        to_score = sorted(set(requested) | ({previous} if previous else set()), key=int)
        scores = _score_versions(name, to_score, data, rescore, client)
        decision = choose_champion(previous, {s.version: s.score for s in scores})
        promotions.append(Promotion(name, alias, previous, decision, scores))

    log_comparison(promotions, data)
    # Alias moves come last, after every score is written and the table is logged.
    # NOTE: no lock spans the decision and the move, so two promotions of one model
    # running at once can both move the alias, and the later move wins.
    for promotion in promotions:
        if promotion.decision.moved:
            set_alias(promotion.name, alias, promotion.decision.version, client)
        logger.info("%s@%s: %s.", promotion.name, alias, promotion.decision.reason)
        mlflow.set_tag(f"{alias}.{promotion.name}", str(promotion.decision.version))
    return promotions


def comparison_rows(promotions: list[Promotion]) -> list[dict]:
    """Return one row per scored version: score, lineage, and what happened to the alias."""
    rows = []
    for promotion in promotions:
        for entry in promotion.scores:
            is_previous = entry.version == promotion.previous
            is_next = entry.version == promotion.decision.version
            if is_next and promotion.decision.moved:
                outcome = f"becomes {promotion.alias}"
            elif is_next:
                outcome = f"stays {promotion.alias}"
            elif is_previous:
                outcome = f"loses {promotion.alias}"
            else:
                outcome = ""
            rows.append({
                "model": promotion.name,
                "version": entry.version,
                "method": entry.tags.get("method", ""),
                "stains": entry.tags.get("stains", ""),
                "epochs": entry.tags.get("epochs", ""),
                "score": f"{entry.score:.4f}",
                "scored_in": "this run" if entry.measured else f"run {entry.record.run_id[:8]}",
                "protocol": entry.record.protocol,
                "protocol_key": entry.record.key,
                "outcome": outcome,
            })
    return rows


def markdown_table(rows: list[dict]) -> str:
    """Render rows as a Markdown table."""
    if not rows:
        return "No versions were scored.\n"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def log_comparison(promotions: list[Promotion], data: ProtocolData) -> None:
    """Log ``promotion/scores.json`` (an MLflow table), ``scores.md`` and ``scores.png`` to the active run."""
    rows = comparison_rows(promotions)
    if rows:
        mlflow.log_table({column: [row[column] for row in rows] for column in rows[0]}, "promotion/scores.json")
    mlflow.log_text(markdown_table(rows), "promotion/scores.md")
    figure = selection_scores_figure(
        [{"model": p.name, "scores": {s.version: s.score for s in p.scores}, "previous": p.previous, "champion": p.decision.version} for p in promotions],
        title=f"{data.protocol.name} (config {data.overlay}, key {data.key})",
        alias=promotions[0].alias if promotions else CHAMPION,
    )
    mlflow.log_figure(figure, "promotion/scores.png")
    close(figure)
