"""Fresh-process loads against a real MLflow tracking server on 127.0.0.1.

Each load runs in a new interpreter with a clean PYTHONPATH and its working directory
outside the repository, so nothing but the server supplies the model.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import mlflow
import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from tests.unit.registry_support import PROBE, bottleneck, register_tiny_encoder
from training.methods import available

pytestmark = pytest.mark.integration

PROJECT_PACKAGES = ("training", "tracking", "registry", "mlproject", "tests")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def remote_uri(tmp_path_factory):
    """Start ``mlflow server`` (SQLite store, proxied artifacts) on a free loopback port."""
    # TODO: use the integration tests' tracking stack (PostgreSQL, S3 store, basic
    # auth) once its fixture is on main. This server has neither authentication nor S3.
    folder = tmp_path_factory.mktemp("server")
    port = _free_port()
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{folder / 'server.db'}", "--artifacts-destination", str(folder / "artifacts"),
    ]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = open(folder / "server.log", "w")
    server = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mlflow server did not start on {uri}:\n{(folder / 'server.log').read_text()[-3000:]}")
                time.sleep(1)
        yield uri
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.fixture
def remote_store(remote_uri, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", remote_uri)
    mlflow.set_tracking_uri(remote_uri)
    yield remote_uri
    mlflow.set_tracking_uri(None)


def _run_fresh(script: str, cwd, uri: str, pythonpath: str | None = None) -> None:
    """Run ``script`` in a new interpreter whose only import path beyond the installed packages is ``pythonpath``."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["MLFLOW_TRACKING_URI"] = uri
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    result = subprocess.run([sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_plain_mlflow_loads_encoder(remote_store, tmp_path, method):
    if method not in available():
        pytest.skip(f"method {method} is not in training.methods yet")
    _, encoder = register_tiny_encoder(method, seed=3)
    np.save(tmp_path / "probe.npy", PROBE)

    script = f"""
import sys
import mlflow
import numpy as np
encoder = mlflow.keras.load_model("models:/unet-encoder-{method}@champion")
np.save("output.npy", np.asarray(encoder.predict(np.load("probe.npy"), verbose=0)[-1]))
imported = sorted({{name.split(".")[0] for name in sys.modules}} & set({PROJECT_PACKAGES!r}))
assert not imported, f"the project was imported: {{imported}}"
"""
    _run_fresh(script, cwd=tmp_path, uri=remote_store)

    assert not str(tmp_path).startswith(str(REPO_ROOT))
    np.testing.assert_allclose(np.load(tmp_path / "output.npy"), bottleneck(encoder), rtol=1e-6, atol=1e-6)


def test_registry_load_in_fresh_process(remote_store, tmp_path):
    _, encoder = register_tiny_encoder("simclr", seed=4, name="unet-encoder-remote")
    np.save(tmp_path / "probe.npy", PROBE)

    script = """
import json
import numpy as np
from registry import load_encoder
encoder, resolved = load_encoder("unet-encoder-remote")
np.save("output.npy", np.asarray(encoder.predict(np.load("probe.npy"), verbose=0)[-1]))
json.dump({"version": resolved.version, "alias": resolved.alias, "uri": resolved.uri}, open("resolved.json", "w"))
"""
    _run_fresh(script, cwd=tmp_path, uri=remote_store, pythonpath=str(REPO_ROOT))

    resolved = json.loads((tmp_path / "resolved.json").read_text())
    assert resolved == {"version": "1", "alias": "champion", "uri": "models:/unet-encoder-remote/1"}
    np.testing.assert_allclose(np.load(tmp_path / "output.npy"), bottleneck(encoder), rtol=1e-6, atol=1e-6)
