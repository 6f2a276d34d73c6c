"""The native stack itself: addresses, authentication, permissions, S3 and Optuna storage."""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import boto3
import botocore
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.conftest import REPO_ROOT
from tests.integration.conftest import require_program
from tracking.stack import StackConfig, StackError, TrackingStack
from tracking.stack.postgres import find_postgres_bindir

pytestmark = pytest.mark.integration

_LISTEN = "0A"


def listening_addresses(port: int) -> set[str]:
    """Return the local addresses that listen on TCP ``port``, read from /proc/net/tcp and tcp6."""
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address_hex, port_hex = local.split(":")
            if state != _LISTEN or int(port_hex, 16) != port:
                continue
            if len(address_hex) == 8:
                # IPv4 in the kernel's byte order, which is little-endian on x86 and ARM.
                addresses.add(".".join(str(int(address_hex[i:i + 2], 16)) for i in (6, 4, 2, 0)))
            else:
                addresses.add(f"ipv6:{address_hex}")
    return addresses


def test_status_reports_every_component_ready(tracking_stack):
    statuses = tracking_stack.stack.status()
    assert [status.name for status in statuses] == ["PostgreSQL", "SeaweedFS S3", "MLflow server"]
    for status in statuses:
        assert status.running, status
        assert status.ready, status


def test_every_listener_binds_loopback_only(tracking_stack):
    config = tracking_stack.stack.config
    ports = {"mlflow": config.mlflow_port, "postgres": config.postgres_port, "s3": config.s3_port}
    ports.update({f"seaweed {name}": port for name, port in asdict(config.seaweed_ports).items()})
    for name, port in ports.items():
        addresses = listening_addresses(port)
        assert addresses, f"nothing listens on the {name} port {port}"
        assert addresses == {"127.0.0.1"}, f"{name} port {port} listens on {addresses}"


def test_cli_status_exits_zero_when_ready(tracking_stack):
    result = subprocess.run(
        [sys.executable, "-m", "tracking.stack", "status", "--state-dir", str(tracking_stack.stack.config.state_dir)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3
    for line in lines:
        assert " ready " in line, line


def test_request_without_credentials_gets_401(tracking_stack):
    response = requests.get(f"{tracking_stack.uri}/api/2.0/mlflow/experiments/search", params={"max_results": 1}, timeout=10)
    assert response.status_code == 401


def test_wrong_password_gets_401(tracking_stack):
    response = requests.get(
        f"{tracking_stack.uri}/api/2.0/mlflow/experiments/search", params={"max_results": 1},
        auth=(tracking_stack.username, "not-the-admin-password"), timeout=10,
    )
    assert response.status_code == 401


def test_reader_can_read_but_not_write(server_env):
    from mlflow.server import get_app_client
    from mlflow.tracking import MlflowClient

    admin = MlflowClient(server_env.uri)
    experiment_id = admin.create_experiment(f"permissions-{secrets.token_hex(4)}")
    run = admin.create_run(experiment_id)
    reader, password = f"reader-{secrets.token_hex(3)}", secrets.token_urlsafe(16)
    # New users get the server's default permission, READ, on every experiment.
    auth = get_app_client("basic-auth", tracking_uri=server_env.uri)
    auth.create_user(reader, password)

    api = f"{server_env.uri}/api/2.0/mlflow"
    read = requests.get(f"{api}/experiments/get", params={"experiment_id": experiment_id}, auth=(reader, password), timeout=10)
    assert read.status_code == 200
    create = requests.post(f"{api}/runs/create", json={"experiment_id": experiment_id}, auth=(reader, password), timeout=10)
    assert create.status_code == 403
    log = requests.post(
        f"{api}/runs/log-metric", json={"run_id": run.info.run_id, "key": "loss", "value": 1.0, "timestamp": 0, "step": 0},
        auth=(reader, password), timeout=10,
    )
    assert log.status_code == 403
    assert admin.get_run(run.info.run_id).data.metrics == {}

    # An explicit EDIT grant on the experiment lifts the restriction.
    auth.grant_user_permission(reader, "experiment", experiment_id, "EDIT")
    granted = requests.post(f"{api}/runs/create", json={"experiment_id": experiment_id}, auth=(reader, password), timeout=10)
    assert granted.status_code == 200


def test_s3_rejects_unsigned_and_foreign_keys(tracking_stack):
    config = tracking_stack.stack.config
    unsigned = boto3.client(
        "s3", endpoint_url=config.s3_endpoint_url, region_name="us-east-1",
        config=Config(signature_version=botocore.UNSIGNED, retries={"max_attempts": 1}),
    )
    with pytest.raises(ClientError) as anonymous:
        unsigned.put_object(Bucket=config.bucket, Key="anonymous.txt", Body=b"x")
    assert anonymous.value.response["Error"]["Code"] == "AccessDenied"

    secrets_ = tracking_stack.stack.secrets
    foreign = tracking_stack.stack.seaweed.s3_client(access_key=secrets_.s3_access_key, secret_key="not-the-secret-key")
    with pytest.raises(ClientError) as forged:
        foreign.list_objects_v2(Bucket=config.bucket)
    assert forged.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_client_artifacts_land_in_bucket(server_env):
    import mlflow

    with mlflow.start_run() as run:
        mlflow.log_text("glomerulus", "notes/hello.txt")
    # The client had no S3 keys: the upload went through the server's artifact proxy.
    experiment_id = run.info.experiment_id
    key = f"{server_env.stack.config.artifact_prefix}/{experiment_id}/{run.info.run_id}/artifacts/notes/hello.txt"
    body = server_env.s3().get_object(Bucket=server_env.stack.config.bucket, Key=key)["Body"].read()
    assert body == b"glomerulus"
    assert mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/notes/hello.txt") == "glomerulus"


def test_optuna_study_lives_in_its_own_database(tracking_stack):
    import optuna
    import psycopg

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = tracking_stack.stack.optuna_storage_url
    assert url.endswith("/optuna")
    name = f"quadratic-{secrets.token_hex(4)}"
    study = optuna.create_study(study_name=name, storage=url, sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(lambda trial: (trial.suggest_float("x", -4, 4) - 1) ** 2, n_trials=4)

    # A second storage object reads the trials back from PostgreSQL.
    reloaded = optuna.load_study(study_name=name, storage=url)
    assert len(reloaded.trials) == 4
    assert reloaded.best_value == pytest.approx(study.best_value)

    # The Optuna role reaches only its own database.
    config, secrets_ = tracking_stack.stack.config, tracking_stack.stack.secrets
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        psycopg.connect(
            host=config.host, port=config.postgres_port, user="optuna", password=secrets_.optuna_role_password,
            dbname="mlflow", connect_timeout=5,
        )


def test_taken_port_fails_start_with_its_name():
    require_program(find_postgres_bindir, "PostgreSQL (Debian package postgresql)")
    state_dir = Path(tempfile.mkdtemp(prefix="tracking-stack-taken-"))
    environ = {"MLFLOW_AUTH_ADMIN_PASSWORD": secrets.token_urlsafe(18), "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_urlsafe(18)}
    with socket.socket() as occupant:
        occupant.bind(("127.0.0.1", 0))
        occupant.listen()
        taken_port = occupant.getsockname()[1]
        stack = TrackingStack(StackConfig.with_free_ports(state_dir, workers=1))
        stack.config.postgres_port = taken_port
        try:
            with pytest.raises(StackError, match="pass another --postgres-port") as error:
                stack.start(environ=environ)
        finally:
            stack.stop()
            shutil.rmtree(state_dir, ignore_errors=True)
    assert f"127.0.0.1:{taken_port}" in str(error.value)
    assert not stack.seaweed.process.is_running()
    assert not stack.mlflow.process.is_running()
