"""Fixtures shared by every test: real data folders and an isolated tracking store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("KIDNEY_SSL_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def shared_dataset(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.fail(f"Real test data {path} not found: check out the project beside ../shared, or set KIDNEY_SSL_SHARED_DATA.")
    return path


@pytest.fixture(scope="session")
def aidpath() -> Path:
    return shared_dataset("glomeruli-pas-aidpath")


@pytest.fixture(scope="session")
def bupt() -> Path:
    return shared_dataset("glomeruli-multistain-bupt")


@pytest.fixture(scope="session")
def multistain_patches() -> Path:
    return shared_dataset("kidney-multistain-patches")


@pytest.fixture(scope="session")
def ihc_image():
    from skimage.data import immunohistochemistry

    return immunohistochemistry()


@pytest.fixture
def tracking_store(tmp_path, monkeypatch) -> str:
    """An embedded SQLite tracking store in a temporary folder, used by this test only."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    import mlflow

    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)
