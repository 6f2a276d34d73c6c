"""Promotion: scores under one protocol key, champion moves only on a strictly better score."""

from __future__ import annotations

import keras
import mlflow
import pytest
from mlflow.tracking import MlflowClient

from registry.__main__ import main as registry_cli
from registry.encoders import lineage_tags
from registry.listing import encoder_versions, format_table
from registry.loading import ModelNotFoundError
from registry.promotion import choose_champion, promote, resolve_targets
from registry.protocol import PROTOCOL, prepare_protocol_data
from registry.scores import KEY_TAG, SCORE_TAG, ScoreRecord
from registry.versions import alias_version, register_version, replace_version_tags, set_alias
from tests.e2e.conftest import TINY_CONFIG
from tests.unit.registry_support import build_tiny_encoder
from tracking.models import encoder_signature, log_keras_model


@pytest.fixture(scope="module")
def store(tmp_path_factory, aidpath):
    """A store with three tiny logged encoders, one logged non-encoder, and the protocol's data."""
    folder = tmp_path_factory.mktemp("promotion")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.chdir(folder)
        mlflow.set_tracking_uri(uri)
        infos = []
        with mlflow.start_run(run_name="tiny encoders") as run:
            for seed in range(3):
                encoder, config = build_tiny_encoder("simclr", seed)
                infos.append(log_keras_model(encoder, f"encoder-{seed}", encoder_signature(encoder)))
            dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
            not_encoder = mlflow.keras.log_model(dense, name="dense")
        data = prepare_protocol_data(aidpath, str(TINY_CONFIG))
        yield {"infos": infos, "not_encoder": not_encoder, "config": config, "run_id": run.info.run_id, "data": data}
        mlflow.set_tracking_uri(None)


def register_copies(store, name: str, infos, champion: str | None = "1") -> None:
    """Register logged models as versions 1, 2, ... of ``name``, without re-logging them."""
    tags = lineage_tags("simclr", "02", "0123456789abcdef", store["config"], store["run_id"])
    for info in infos:
        register_version(info.model_uri, name, store["run_id"], tags, model_id=info.model_id)
    if champion:
        set_alias(name, "champion", champion)


def write_score(store, name: str, version: str, score: float, key: str | None = None) -> None:
    record = ScoreRecord(score, PROTOCOL.name, key or store["data"].key, "tiny.yaml", "digest", "run")
    replace_version_tags(name, version, record.tags(), commit_tag=KEY_TAG)


def version_tags(name: str, version: str) -> dict:
    return MlflowClient().get_model_version(name, version).tags


def champion_of(name: str) -> str:
    return str(alias_version(name, "champion").version)


def child_runs(parent_id: str):
    return mlflow.search_runs(search_all_experiments=True, filter_string=f"tags.mlflow.parentRunId = '{parent_id}'", output_format="list")


@pytest.mark.parametrize(
    "current, scores, expected, moved",
    [
        (None, {"1": 0.5, "2": 0.7}, "2", True),
        ("1", {"1": 0.7, "2": 0.7}, "1", False),
        ("2", {"1": 0.7, "2": 0.7}, "2", False),
        ("1", {"1": 0.7, "2": 0.6}, "1", False),
        ("1", {"1": 0.5, "2": 0.7, "3": 0.7}, "2", True),
        ("1", {"1": 0.5, "2": 0.5000001}, "2", True),
        (None, {}, None, False),
        ("3", {}, "3", False),
    ],
)
def test_choose_champion_cases(current, scores, expected, moved):
    decision = choose_champion(current, scores)
    assert decision.version == expected
    assert decision.moved == moved


def test_choose_champion_needs_holder_score():
    with pytest.raises(ValueError, match="version 1, which has no score"):
        choose_champion("1", {"2": 0.9})


def test_score_record_round_trips():
    record = ScoreRecord(0.1234567890123, "fixed-5pct-v1", "abcd", "small", "digest", "run")
    assert ScoreRecord.from_tags(record.tags()) == record
    assert list(record.tags())[-1] == KEY_TAG


def test_record_without_key_is_unscored():
    tags = ScoreRecord(0.5, "fixed-5pct-v1", "abcd", "small", "digest", "run").tags()
    del tags[KEY_TAG]
    assert ScoreRecord.from_tags(tags) is None
    assert ScoreRecord.from_tags({SCORE_TAG: "nan", KEY_TAG: "abcd"}) is None


class _FailingClient(MlflowClient):
    """A client whose version-tag writes fail after ``allowed`` calls, like a dropped connection."""

    def __init__(self, allowed: int):
        super().__init__()
        self.allowed = allowed

    def set_model_version_tag(self, *args, **kwargs):
        if self.allowed == 0:
            raise ConnectionError("tracking server went away")
        self.allowed -= 1
        return super().set_model_version_tag(*args, **kwargs)


def test_half_written_score_reads_unscored(store):
    name = "unet-encoder-halfwritten"
    register_copies(store, name, store["infos"][:1])
    write_score(store, name, "1", 0.5)
    new = ScoreRecord(0.9, PROTOCOL.name, "newkey", "small", "digest", "run2")

    with pytest.raises(ConnectionError):
        replace_version_tags(name, "1", new.tags(), commit_tag=KEY_TAG, client=_FailingClient(allowed=2))

    tags = version_tags(name, "1")
    assert tags[SCORE_TAG] == repr(0.9), "the write stopped halfway"
    assert KEY_TAG not in tags
    assert ScoreRecord.from_tags(tags) is None


def test_promote_moves_champion_to_best(store):
    name = "unet-encoder-promote"
    register_copies(store, name, store["infos"], champion="1")
    data = store["data"]

    with mlflow.start_run() as run:
        (promotion,) = promote(name, data)
    scores = {entry.version: entry.score for entry in promotion.scores}
    best = min(scores, key=lambda version: (-scores[version], int(version)))

    assert sorted(scores) == ["1", "2", "3"]
    assert all(entry.measured for entry in promotion.scores)
    assert champion_of(name) == best
    assert promotion.decision.moved == (best != "1")
    for version, score in scores.items():
        tags = version_tags(name, version)
        assert tags["selection_protocol"] == "fixed-5pct-v1"
        assert tags[KEY_TAG] == data.key
        assert float(tags[SCORE_TAG]) == score

    artifacts = {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "promotion")}
    assert artifacts == {"promotion/scores.json", "promotion/scores.md", "promotion/scores.png"}
    children = child_runs(run.info.run_id)
    assert sorted(child.data.params["encoder_resolved_version"] for child in children) == ["1", "2", "3"]
    assert all("selection_score" in child.data.metrics for child in children)

    # A second promotion finds every score under the same key and trains nothing.
    with mlflow.start_run() as again:
        (repeat,) = promote(name, data)
    assert not any(entry.measured for entry in repeat.scores)
    assert child_runs(again.info.run_id) == []
    assert champion_of(name) == best


def test_tie_or_lower_never_moves(store):
    name = "unet-encoder-tie"
    register_copies(store, name, store["infos"][:2], champion="1")
    write_score(store, name, "1", 0.5)
    cases = [(0.5, "1"), (0.4, "1"), (0.6, "2")]
    for challenger, holder in cases:
        write_score(store, name, "2", challenger)
        with mlflow.start_run():
            promote(name, store["data"])
        assert champion_of(name) == holder, f"challenger score {challenger}"


def test_other_protocol_key_rescored(store):
    name = "unet-encoder-oldkey"
    register_copies(store, name, store["infos"][:1], champion="1")
    write_score(store, name, "1", 0.99, key="0000000000000000")

    with mlflow.start_run():
        (promotion,) = promote(name, store["data"])

    (first,) = promotion.scores
    assert first.measured
    assert first.score != 0.99
    assert version_tags(name, "1")[KEY_TAG] == store["data"].key


def test_failed_scoring_keeps_alias(store):
    name = "unet-encoder-broken"
    register_copies(store, name, [store["infos"][0], store["not_encoder"]], champion="1")
    write_score(store, name, "1", 0.1)

    with mlflow.start_run() as run:
        with pytest.raises(ValueError, match="is not an encoder"):
            promote(name, store["data"])

    assert champion_of(name) == "1"
    assert "selection_score" not in version_tags(name, "2")
    (child,) = child_runs(run.info.run_id)
    assert child.info.status == "FAILED"


def test_targets_list_what_exists(store):
    name = "unet-encoder-targets"
    register_copies(store, name, store["infos"][:2])
    client = MlflowClient()

    assert resolve_targets(name, None, client) == {name: ["1", "2"]}
    assert resolve_targets(name, ["2"], client) == {name: ["2"]}
    with pytest.raises(ModelNotFoundError, match=f"{name}: versions 1, 2"):
        resolve_targets(name, ["7"], client)
    with pytest.raises(ModelNotFoundError, match=f"{name}: versions 1, 2; aliases champion -> version 1"):
        resolve_targets("unet-encoder-missing", None, client)
    with pytest.raises(ValueError, match="needs a single model"):
        resolve_targets("all", ["1"], client)
    assert name in resolve_targets("all", None, client)


def test_listing_shows_scores_and_aliases(store, capsys):
    name = "unet-encoder-listed"
    register_copies(store, name, store["infos"][:2], champion="1")
    write_score(store, name, "1", 0.625)

    rows = {row.version: row for row in encoder_versions(model=name)}
    assert rows["1"].aliases == "champion"
    assert rows["1"].score == "0.6250"
    assert rows["1"].protocol == "fixed-5pct-v1 (tiny.yaml)"
    assert rows["1"].method == "simclr"
    assert rows["1"].source_run_id == store["run_id"]
    assert rows["2"].score == "-"
    assert rows["2"].aliases == ""

    table = format_table(list(rows.values()))
    assert table.splitlines()[0].split()[:3] == ["model", "version", "aliases"]

    assert registry_cli(["list", "--model", name]) == 0
    printed = capsys.readouterr().out
    assert "champion" in printed
    assert "0.6250" in printed

    assert registry_cli(["list", "--model", "unet-encoder-absent"]) == 2
    assert "'unet-encoder-absent' not found" in capsys.readouterr().err
