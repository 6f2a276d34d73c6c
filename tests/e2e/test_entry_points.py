"""One ``mlflow run`` per entry point on real images, with tiny settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tests.e2e.conftest import mlflow_run

pytestmark = pytest.mark.e2e


def _runs(entry_point: str):
    return mlflow.search_runs(search_all_experiments=True, filter_string=f"tags.entry_point = '{entry_point}'", output_format="list")


def test_pretrain_registers_encoder_with_lineage(tracking_store, tmp_path, multistain_patches):
    mlflow_run("pretrain", tmp_path, method="simclr", data_dir=multistain_patches)
    client = MlflowClient()
    version = client.get_model_version_by_alias("unet-encoder-simclr", "champion")
    for tag in ("method", "stains", "dataset_digest", "source_run_id", "best_val_loss", "config"):
        assert tag in version.tags, tag
    assert version.tags["method"] == "simclr"
    assert "16" in version.tags["stains"].split(",")
    run = client.get_run(version.run_id)
    assert run.info.status == "FINISHED"
    assert "loss" in run.data.metrics
    assert "val_loss" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert "figures/views.png" in artifacts
    assert run.inputs.dataset_inputs, "the unlabelled dataset is logged as an input"


def test_segment_reports_f1_per_stain(tracking_store, tmp_path, bupt):
    mlflow_run("segment", tmp_path, labelled_dir=bupt, label_fraction=0.5)
    (run,) = _runs("segment")
    assert run.info.status == "FINISHED"
    for key in ("test_f1", "test_f1_pas", "test_f1_pasm", "test_f1_masson", "val_f1", "val_loss", "loss"):
        assert key in run.data.metrics, key
        assert np.isfinite(run.data.metrics[key])
    splits = json.loads(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/splits.json"))
    assert int(run.data.params["n_labelled"]) == len(splits["labelled"]) < len(splits["train"])
    assert MlflowClient().get_registered_model("unet-glomeruli").latest_versions


def test_main_chains_children_and_alias_loads(tracking_store, tmp_path, monkeypatch):
    monkeypatch.setenv("KIDNEY_SSL_DEMO_DIR", str(tmp_path / "demo"))
    mlflow_run("main", tmp_path)
    (parent,) = _runs("main")
    children = mlflow.search_runs(search_all_experiments=True, filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'", output_format="list")
    assert sorted(child.data.tags["entry_point"] for child in children) == ["pretrain", "segment"]
    segment = next(child for child in children if child.data.tags["entry_point"] == "segment")
    assert segment.data.params["encoder_resolved_version"] == "1"
    assert "test_f1" in parent.data.metrics

    # A fresh interpreter that never imports the project loads the champion by alias.
    script = (
        "import mlflow, numpy as np, sys\n"
        "m = mlflow.keras.load_model('models:/unet-encoder-simclr@champion')\n"
        "x = np.linspace(0, 1, 64 * 64 * 3, dtype='float32').reshape(1, 64, 64, 3)\n"
        "np.save(sys.argv[1], m.predict(x, verbose=0)[-1])\n"
    )
    out = tmp_path / "bottleneck.npy"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-c", script, str(out)], cwd=tmp_path, env=env, check=True, timeout=300)
    from registry.loading import load_encoder

    encoder, resolved = load_encoder("unet-encoder-simclr")
    x = np.linspace(0, 1, 64 * 64 * 3, dtype="float32").reshape(1, 64, 64, 3)
    np.testing.assert_allclose(np.load(out), encoder.predict(x, verbose=0)[-1], rtol=1e-5, atol=1e-6)
    assert resolved.version == "1"


def test_segment_with_orphan_image_fails_cleanly(tracking_store, tmp_path, aidpath):
    broken = tmp_path / "broken"
    (broken / "images").mkdir(parents=True)
    (broken / "masks").mkdir()
    for name in ("10003", "10014", "10025", "10063"):
        (broken / "images" / f"{name}.png").symlink_to(aidpath / "images" / f"{name}.png")
        if name != "10063":
            (broken / "masks" / f"{name}.png").symlink_to(aidpath / "masks" / f"{name}.png")
    result = mlflow_run("segment", tmp_path, check=False, labelled_dir=broken)
    assert result.returncode != 0
    (run,) = _runs("segment")
    assert run.info.status == "FAILED"
    assert "10063.png has no mask" in run.data.tags["error"]
    assert not MlflowClient().search_registered_models()
