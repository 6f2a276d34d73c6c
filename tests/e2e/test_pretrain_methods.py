"""``mlflow run -e pretrain`` of BYOL and HR-CS-CO on real patches, registration and reuse by name."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tests.e2e.conftest import mlflow_run

pytestmark = pytest.mark.e2e


def _runs(filter_string: str):
    return mlflow.search_runs(search_all_experiments=True, filter_string=filter_string, output_format="list")


def _figures(client: MlflowClient, run_id: str) -> set[str]:
    return {artifact.path for artifact in client.list_artifacts(run_id, "figures")}


def _stage_children(parent_run_id: str) -> dict:
    children = _runs(f"tags.mlflow.parentRunId = '{parent_run_id}'")
    return {child.data.tags["stage"]: child for child in children}


def test_byol_pretrain_registers_encoder(tracking_store, tmp_path, multistain_patches):
    mlflow_run("pretrain", tmp_path, method="byol", data_dir=multistain_patches)
    client = MlflowClient()
    version = client.get_model_version_by_alias("unet-encoder-byol", "champion")
    assert version.tags["method"] == "byol"
    assert "16" in version.tags["stains"].split(",")
    run = client.get_run(version.run_id)
    assert run.info.status == "FINISHED"
    for key in ("loss", "val_loss", "momentum"):
        assert key in run.data.metrics, key
    assert 0.99 <= run.data.metrics["momentum"] <= 1.0
    assert "figures/views.png" in _figures(client, run.info.run_id)


def test_hrcsco_pretrain_registers_and_segments(tracking_store, tmp_path, multistain_patches, bupt):
    mlflow_run("pretrain", tmp_path, method="hrcsco", data_dir=multistain_patches, stain="16")
    client = MlflowClient()
    version = client.get_model_version_by_alias("unet-encoder-hrcsco", "champion")
    assert version.tags["stain"] == "16"
    assert version.tags["counter_stain"] == "DAB"
    assert version.tags["stains"] == "16"
    parent = client.get_run(version.run_id)
    assert parent.data.params["domains"] == "16"
    assert {"figures/views.png", "figures/stain_channels.png"} <= _figures(client, parent.info.run_id)

    # Both stages are finished children of the registering run, in order.
    children = _stage_children(parent.info.run_id)
    assert sorted(children) == ["contrastive", "cross_stain"]
    assert all(child.info.status == "FINISHED" for child in children.values())
    assert children["cross_stain"].info.end_time <= children["contrastive"].info.start_time
    assert "cross_stain_loss" in children["contrastive"].data.metrics
    for key in ("cross_stain_loss", "h_to_o_loss", "o_to_h_loss"):
        assert key in children["cross_stain"].data.metrics, key
    weights = client.list_artifacts(children["cross_stain"].info.run_id, "stage_weights")
    assert [artifact.path for artifact in weights] == ["stage_weights/cross_stain.weights.h5"]

    # segment pulls the encoder back by name.
    mlflow_run("segment", tmp_path, labelled_dir=bupt, encoder="unet-encoder-hrcsco", label_fraction=0.5)
    (segment,) = _runs("tags.entry_point = 'segment'")
    assert segment.info.status == "FINISHED"
    assert segment.data.params["encoder_resolved_version"] == "1"
    assert np.isfinite(segment.data.metrics["test_f1"])


def test_hrcsco_stage_order_enforced(tracking_store, tmp_path, multistain_patches):
    # The contrastive stage alone has no cross-stain weights to start from.
    failed = mlflow_run("pretrain", tmp_path, check=False, method="hrcsco", data_dir=multistain_patches, stain="16", stage="contrastive")
    assert failed.returncode != 0
    (refused,) = _runs("tags.entry_point = 'pretrain'")
    assert refused.info.status == "FAILED"
    assert "stage=cross_stain" in refused.data.tags["error"]
    assert "Run it first" in refused.data.tags["error"]
    assert not MlflowClient().search_registered_models()

    # Stage 1 in one invocation, stage 2 in the next: both are children of the first run.
    mlflow_run("pretrain", tmp_path, method="hrcsco", data_dir=multistain_patches, stain="16", stage="cross_stain")
    first = _runs("tags.entry_point = 'pretrain' and attributes.status = 'FINISHED'")[0]
    assert not MlflowClient().search_registered_models()
    mlflow_run("pretrain", tmp_path, method="hrcsco", data_dir=multistain_patches, stain="16", stage="contrastive", resume_from=first.info.run_id)
    children = _stage_children(first.info.run_id)
    assert sorted(children) == ["contrastive", "cross_stain"]
    version = MlflowClient().get_model_version_by_alias("unet-encoder-hrcsco", "champion")
    assert MlflowClient().get_run(version.run_id).data.tags["resumed_from"] == first.info.run_id
