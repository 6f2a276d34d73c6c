"""``mlflow run`` of pretrain and segment against the authenticated server, then the UI.

The runs share one module-scoped experiment: pretrain registers an encoder, segment
pulls it back by alias through the server, and the UI test opens segment's run page.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO_ROOT
from tests.e2e.conftest import TINY_CONFIG
from tests.integration.conftest import require_program

pytestmark = pytest.mark.integration

SCREENSHOT_DIR = REPO_ROOT / "outputs" / "integration"
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


def project_environment(tracking_stack, experiment: str | None = None) -> dict[str, str]:
    """The test's environment with only MLflow's client variables for the server: no S3 keys."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "AWS_"))}
    env.update(tracking_stack.client_environment())
    if experiment:
        env["MLFLOW_EXPERIMENT_NAME"] = experiment
    # The entry point's command calls `python`: the interpreter running the tests.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def mlflow_run(entry_point: str, env: dict, cwd: Path, **parameters) -> subprocess.CompletedProcess:
    parameters.setdefault("config", str(TINY_CONFIG))
    command = [sys.executable, "-m", "mlflow", "run", str(REPO_ROOT), "-e", entry_point, "--env-manager", "local"]
    for key, value in parameters.items():
        command += ["-P", f"{key}={value}"]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        pytest.fail(f"mlflow run -e {entry_point} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result


def only_run(client: MlflowClient, experiment_id: str, entry_point: str):
    (run,) = client.search_runs([experiment_id], filter_string=f"tags.entry_point = '{entry_point}'")
    return run


def bucket_keys(tracking_stack, prefix: str) -> set[str]:
    config = tracking_stack.stack.config
    pages = tracking_stack.s3().get_paginator("list_objects_v2").paginate(Bucket=config.bucket, Prefix=prefix)
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


@pytest.fixture(scope="module")
def project_runs(tracking_stack, tmp_path_factory, multistain_patches, aidpath):
    """Run pretrain, then segment with the encoder pulled back by alias, both through the server."""
    experiment = f"integration-{secrets.token_hex(4)}"
    encoder_name = f"unet-encoder-simclr-{secrets.token_hex(3)}"
    env = project_environment(tracking_stack, experiment)
    workdir = tmp_path_factory.mktemp("projects")
    mlflow_run("pretrain", env, workdir, method="simclr", data_dir=multistain_patches, stain="16", register_as=encoder_name)
    mlflow_run("segment", env, workdir, labelled_dir=aidpath, encoder=f"{encoder_name}@champion", register_as="none")
    return {"experiment": experiment, "encoder_name": encoder_name, "env": env, "workdir": workdir}


@pytest.fixture
def client(server_env) -> MlflowClient:
    return MlflowClient(server_env.uri)


def test_pretrain_logs_to_server(project_runs, client):
    experiment = client.get_experiment_by_name(project_runs["experiment"])
    assert experiment.artifact_location.startswith("mlflow-artifacts:")
    run = only_run(client, experiment.experiment_id, "pretrain")
    assert run.info.status == "FINISHED"
    assert run.data.params["method"] == "simclr"
    for key in ("loss", "val_loss"):
        assert key in run.data.metrics, key


def test_pretrain_artifacts_land_in_bucket(project_runs, client, tracking_stack):
    experiment = client.get_experiment_by_name(project_runs["experiment"])
    run = only_run(client, experiment.experiment_id, "pretrain")
    prefix = f"{tracking_stack.stack.config.artifact_prefix}/{experiment.experiment_id}/"
    keys = bucket_keys(tracking_stack, prefix)
    run_prefix = f"{prefix}{run.info.run_id}/artifacts/"
    assert f"{run_prefix}config.yaml" in keys
    assert f"{run_prefix}figures/views.png" in keys
    # MLflow 3 keeps logged models under models/<model id>/ beside the runs.
    assert any(key.startswith(f"{prefix}models/") and key.endswith("MLmodel") for key in keys), sorted(keys)[:20]


def test_encoder_loads_by_alias_in_fresh_process(project_runs):
    script = (
        "import json, numpy as np\n"
        "from registry.loading import load_encoder\n"
        f"encoder, resolved = load_encoder('{project_runs['encoder_name']}@champion')\n"
        "features = encoder.predict(np.zeros((1, 64, 64, 3), 'float32'), verbose=0)\n"
        "print(json.dumps({'version': resolved.version, 'shapes': [list(f.shape) for f in features]}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=project_runs["env"], capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["version"] == "1"
    assert len(loaded["shapes"]) >= 2
    for shape in loaded["shapes"]:
        assert shape[0] == 1


def test_segment_uses_encoder_through_server(project_runs, client, tracking_stack):
    experiment = client.get_experiment_by_name(project_runs["experiment"])
    run = only_run(client, experiment.experiment_id, "segment")
    assert run.info.status == "FINISHED"
    assert run.data.params["encoder_resolved_name"] == project_runs["encoder_name"]
    assert run.data.params["encoder_resolved_version"] == "1"
    for key in ("loss", "val_loss", "val_f1", "test_f1"):
        assert key in run.data.metrics, key
    keys = bucket_keys(tracking_stack, f"{tracking_stack.stack.config.artifact_prefix}/{experiment.experiment_id}/{run.info.run_id}/")
    assert any(key.endswith("splits.json") for key in keys), sorted(keys)


def test_entry_point_stops_before_training_on_wrong_password(tracking_stack, tmp_path, aidpath):
    env = project_environment(tracking_stack)
    env["MLFLOW_TRACKING_PASSWORD"] = "wrong-password-123"
    result = subprocess.run(
        [sys.executable, "-m", "mlproject.segment", "--labelled-dir", str(aidpath), "--config", str(TINY_CONFIG)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0
    assert "Fix MLFLOW_TRACKING_PASSWORD" in result.stderr
    assert "Epoch" not in result.stdout + result.stderr


def test_ui_shows_run_metrics(project_runs, client, tracking_stack):
    require_program(find_chromium, "Chromium (Debian package chromium)")
    from playwright.sync_api import sync_playwright

    experiment = client.get_experiment_by_name(project_runs["experiment"])
    run = only_run(client, experiment.experiment_id, "segment")
    url = f"{tracking_stack.uri}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}"
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    screenshot = SCREENSHOT_DIR / "segment-run-page.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context(
                http_credentials={"username": tracking_stack.username, "password": tracking_stack.password},
                viewport={"width": 1400, "height": 1600},
            )
            page = context.new_page()
            page.goto(url)
            page.get_by_text(run.info.run_name).first.wait_for(timeout=60_000)
            page.get_by_text("test_f1", exact=True).first.wait_for(timeout=30_000)
            text = page.inner_text("body")
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert run.info.run_id in text
    for key in ("test_f1", "val_f1", "val_loss"):
        assert key in text, key
        # The UI prints the shortest round-trip decimal, as Python's repr does.
        assert repr(run.data.metrics[key]) in text, (key, run.data.metrics[key])
    assert screenshot.stat().st_size > 10_000


def find_chromium() -> str:
    from tracking.stack import StackError

    for path in (os.environ.get("KIDNEY_SSL_CHROMIUM", ""), "/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if path and Path(path).exists():
            return path
    raise StackError("chromium not found at $KIDNEY_SSL_CHROMIUM, /usr/bin/chromium or /usr/bin/chromium-browser: apt-get install -y chromium.")
