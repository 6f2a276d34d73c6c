"""``pretrain`` with a labelled set, then ``promote``, with ``mlflow run`` on real images."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from registry.scores import KEY_TAG, SCORE_TAG
from tests.e2e.conftest import TINY_CONFIG, mlflow_run

pytestmark = pytest.mark.e2e

NAME = "unet-encoder-simclr"


def _runs(entry_point: str):
    return mlflow.search_runs(search_all_experiments=True, filter_string=f"tags.entry_point = '{entry_point}'", output_format="list")


def test_pretrain_scores_then_promote_reuses(tracking_store, tmp_path, multistain_patches, aidpath):
    mlflow_run("pretrain", tmp_path, method="simclr", data_dir=multistain_patches, stain="02", labelled_dir=aidpath, selection_config=TINY_CONFIG)
    client = MlflowClient()
    version = client.get_model_version_by_alias(NAME, "champion")
    assert str(version.version) == "1"
    for tag in ("method", "stains", "dataset_digest", "epochs", "source_run_id", "config", SCORE_TAG, "selection_protocol", KEY_TAG):
        assert tag in version.tags, tag
    assert version.tags["selection_protocol"] == "fixed-5pct-v1"
    (pretrain,) = [run for run in _runs("pretrain") if run.info.run_id == version.run_id]
    assert pretrain.data.metrics["selection_score"] == pytest.approx(float(version.tags[SCORE_TAG]))
    artifacts = {a.path for a in client.list_artifacts(pretrain.info.run_id, "promotion")}
    assert "promotion/scores.png" in artifacts

    # promote finds the score under the same protocol key and trains nothing.
    mlflow_run("promote", tmp_path, model=NAME, labelled_dir=aidpath)
    promotion = next(run for run in _runs("promote") if run.data.tags.get("mlflow.parentRunId") is None)
    assert promotion.info.status == "FINISHED"
    assert promotion.data.tags[f"champion.{NAME}"] == "1"
    children = mlflow.search_runs(search_all_experiments=True, filter_string=f"tags.mlflow.parentRunId = '{promotion.info.run_id}'", output_format="list")
    assert children == []
    scores = mlflow.artifacts.load_text(f"runs:/{promotion.info.run_id}/promotion/scores.md")
    assert "stays champion" in scores

