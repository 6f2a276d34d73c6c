"""check_tracking_server() against the real stack: each failure names the variable to fix."""

from __future__ import annotations

import dataclasses

import pytest

from tracking.preflight import TrackingServerError, check_tracking_server
from tracking.stack import free_port
from tracking.stack.seaweed import SeaweedStore

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("uri", ["sqlite:///nowhere/mlflow.db", "file:///nowhere/mlruns", "postgresql://nobody@127.0.0.1:1/none"])
def test_embedded_stores_skip_the_check(clean_client_env, uri):
    # Credentials that would fail any server are not looked at.
    clean_client_env.setenv("MLFLOW_TRACKING_USERNAME", "nobody")
    check_tracking_server(uri)


def test_unset_uri_skips_the_check(clean_client_env):
    check_tracking_server()


def test_ready_server_passes(server_env):
    check_tracking_server()


def test_unreachable_server_names_uri(clean_client_env):
    clean_client_env.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TrackingServerError, match="unreachable") as error:
        check_tracking_server(timeout=3)
    assert "MLFLOW_TRACKING_URI=http://127.0.0.1:" in str(error.value)


def test_missing_credentials_are_named(tracking_stack, clean_client_env):
    clean_client_env.setenv("MLFLOW_TRACKING_URI", tracking_stack.uri)
    with pytest.raises(TrackingServerError, match="MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"):
        check_tracking_server()


def test_half_credentials_are_named(tracking_stack, clean_client_env):
    clean_client_env.setenv("MLFLOW_TRACKING_URI", tracking_stack.uri)
    clean_client_env.setenv("MLFLOW_TRACKING_USERNAME", tracking_stack.username)
    with pytest.raises(TrackingServerError, match="Set MLFLOW_TRACKING_PASSWORD"):
        check_tracking_server()


def test_wrong_password_is_named(tracking_stack, clean_client_env):
    clean_client_env.setenv("MLFLOW_TRACKING_URI", tracking_stack.uri)
    clean_client_env.setenv("MLFLOW_TRACKING_USERNAME", tracking_stack.username)
    clean_client_env.setenv("MLFLOW_TRACKING_PASSWORD", "wrong-password-123")
    with pytest.raises(TrackingServerError, match="Fix MLFLOW_TRACKING_PASSWORD"):
        check_tracking_server()


def test_unknown_run_id_is_named(server_env, monkeypatch):
    monkeypatch.setenv("MLFLOW_RUN_ID", "0123456789abcdef0123456789abcdef")
    with pytest.raises(TrackingServerError, match="MLFLOW_RUN_ID=0123456789abcdef0123456789abcdef"):
        check_tracking_server()


@pytest.fixture
def store_swap(server_env):
    """Let a test stop or replace the S3 store; the stack's own store runs again afterwards."""
    seaweed = server_env.stack.seaweed
    replacements: list[SeaweedStore] = []
    yield seaweed, replacements
    for replacement in replacements:
        replacement.stop()
    seaweed.start()


def test_stopped_artifact_store_names_endpoint(server_env, store_swap):
    seaweed, _ = store_swap
    seaweed.stop()
    with pytest.raises(TrackingServerError, match="Fix MLFLOW_S3_ENDPOINT_URL on the server"):
        check_tracking_server()


def test_rotated_store_keys_name_key_variable(server_env, store_swap):
    seaweed, replacements = store_swap
    seaweed.stop()
    # The store now accepts only a new key pair, which the MLflow server does not have.
    rotated = SeaweedStore(seaweed.config, dataclasses.replace(seaweed.secrets, s3_access_key="KSROTATEDKEY00001", s3_secret_key="rotated-secret-key"))
    replacements.append(rotated)
    rotated.start()
    with pytest.raises(TrackingServerError, match="Fix AWS_ACCESS_KEY_ID on the server") as error:
        check_tracking_server()
    assert "Clients need no S3 keys" in str(error.value)
