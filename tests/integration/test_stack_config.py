"""Launcher settings and secrets that are rejected before anything starts."""

from __future__ import annotations

import stat

import pytest

from tracking.stack import StackConfig, StackConfigError, StackSecrets, free_port
from tracking.stack.cli import main as cli_main
from tracking.stack.config import AdminCredentials, SeaweedPorts

pytestmark = pytest.mark.integration


def test_duplicate_ports_are_rejected(tmp_path):
    port = free_port()
    with pytest.raises(StackConfigError, match=f"s3_port and mlflow_port are both {port}"):
        StackConfig(state_dir=tmp_path, mlflow_port=port, s3_port=port)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"mlflow_port": 0}, "mlflow_port=0 is invalid"),
        ({"workers": 0}, "workers=0 is invalid"),
        ({"default_permission": "WRITE"}, "default_permission='WRITE' is invalid"),
        ({"bucket": "a/b"}, "bucket='a/b' is invalid"),
    ],
)
def test_invalid_settings_are_rejected(tmp_path, settings, message):
    with pytest.raises(StackConfigError, match=message):
        StackConfig(state_dir=tmp_path, **settings)


def test_settings_round_trip_through_state_dir(tmp_path):
    config = StackConfig.with_free_ports(tmp_path, workers=3)
    config.save()
    loaded = StackConfig.load(tmp_path)
    assert loaded == config
    assert isinstance(loaded.seaweed_ports, SeaweedPorts)


def test_load_without_saved_settings_says_how(tmp_path):
    with pytest.raises(StackConfigError, match="start the stack with this --state-dir first"):
        StackConfig.load(tmp_path)


def test_secrets_are_private_and_stable(tmp_path):
    created = StackSecrets.load_or_create(tmp_path)
    assert stat.S_IMODE((tmp_path / "secrets.json").stat().st_mode) == 0o600
    assert StackSecrets.load_or_create(tmp_path) == created
    assert len({created.tracking_role_password, created.optuna_role_password, created.postgres_superuser_password}) == 3


def test_missing_admin_secrets_are_named():
    with pytest.raises(StackConfigError, match="MLFLOW_AUTH_ADMIN_PASSWORD and MLFLOW_FLASK_SERVER_SECRET_KEY are not set"):
        AdminCredentials.from_environment({})


def test_short_admin_password_is_rejected():
    environ = {"MLFLOW_AUTH_ADMIN_PASSWORD": "short", "MLFLOW_FLASK_SERVER_SECRET_KEY": "key"}
    with pytest.raises(StackConfigError, match="MLFLOW_AUTH_ADMIN_PASSWORD has 5 characters"):
        AdminCredentials.from_environment(environ)


def test_cli_start_without_secrets_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("MLFLOW_FLASK_SERVER_SECRET_KEY", raising=False)
    state_dir = tmp_path / "stack"
    assert cli_main(["start", "--state-dir", str(state_dir)]) == 1
    assert "MLFLOW_AUTH_ADMIN_PASSWORD" in capsys.readouterr().err
    assert not state_dir.exists()
