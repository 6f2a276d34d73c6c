"""docker/ against the native stack: services, ports, variables, databases and entry points.

Docker cannot run on the test machines, so these tests parse the files and compare
them with what the native launcher does.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT
from tracking.stack.config import (
    AUTH_DATABASE, OPTUNA_DATABASE, OPTUNA_ROLE, POSTGRES_DIALECT, TRACKING_DATABASE, TRACKING_ROLE, StackConfig,
)
from tracking.stack.mlflow_server import SERVER_ENVIRONMENT_VARIABLES, server_command
from tracking.stack.seaweed import SeaweedStore

pytestmark = pytest.mark.integration

DOCKER = REPO_ROOT / "docker"
CLIENT_VARIABLES = {"MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def native(tmp_path_factory) -> StackConfig:
    """The launcher's default settings, which the Compose file mirrors."""
    return StackConfig(state_dir=tmp_path_factory.mktemp("native"))


def is_flag(argument: str) -> bool:
    # "--timeout-graceful-shutdown 5" is one value of --uvicorn-opts, not a flag.
    return argument.startswith("--") and " " not in argument


def flags(arguments: list[str]) -> dict[str, str | None]:
    """Map each ``--flag`` to the value after it, or None when another flag follows."""
    parsed: dict[str, str | None] = {}
    for index, argument in enumerate(arguments):
        if not is_flag(argument):
            continue
        following = arguments[index + 1] if index + 1 < len(arguments) else None
        parsed[argument] = following if following is not None and not is_flag(following) else None
    return parsed


def published(service: dict) -> list[tuple[str, int, int]]:
    """Return (default host address, host port, container port) for each published port."""
    result = []
    for entry in service["ports"]:
        match = re.fullmatch(r"\$\{BIND_ADDRESS:-([^}]+)\}:(\d+):(\d+)", entry)
        assert match, f"port {entry!r} is not published on ${{BIND_ADDRESS:-...}}"
        result.append((match[1], int(match[2]), int(match[3])))
    return result


def test_compose_has_the_stack_services(compose):
    assert {"postgres", "seaweedfs", "mlflow", "train"} <= set(compose["services"])


def test_compose_ports_match_native_defaults(compose, native):
    expected = {"mlflow": native.mlflow_port, "postgres": native.postgres_port, "seaweedfs": native.s3_port}
    for service, port in expected.items():
        assert published(compose["services"][service]) == [(native.host, port, port)], service


def test_mlflow_environment_names_match_native(compose):
    environment = compose["services"]["mlflow"]["environment"]
    assert set(environment) == set(SERVER_ENVIRONMENT_VARIABLES)
    assert not CLIENT_VARIABLES & set(environment)


def test_mlflow_environment_values_match_native(compose, native):
    environment = compose["services"]["mlflow"]["environment"]
    assert environment["MLFLOW_ARTIFACTS_DESTINATION"] == native.artifacts_destination
    assert environment["MLFLOW_S3_ENDPOINT_URL"] == f"http://seaweedfs:{native.s3_port}"
    assert environment["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    backend = environment["MLFLOW_BACKEND_STORE_URI"]
    assert backend.startswith(f"{POSTGRES_DIALECT}://{TRACKING_ROLE}:")
    assert backend.endswith(f"@postgres:{native.postgres_port}/{TRACKING_DATABASE}")


def test_mlflow_command_matches_native(compose, native):
    native_flags = flags(server_command(native)[4:])
    compose_flags = flags(compose["services"]["mlflow"]["command"])
    assert set(compose_flags) == set(native_flags)
    for flag, value in native_flags.items():
        if flag != "--host":
            assert compose_flags[flag] == value, flag
    assert compose_flags["--app-name"] == "basic-auth"


def test_postgres_init_creates_native_databases():
    script = (DOCKER / "postgres" / "init-databases.sh").read_text()
    for role in (TRACKING_ROLE, OPTUNA_ROLE):
        assert f"CREATE ROLE {role} WITH LOGIN" in script, role
    for database, owner in ((TRACKING_DATABASE, TRACKING_ROLE), (AUTH_DATABASE, TRACKING_ROLE), (OPTUNA_DATABASE, OPTUNA_ROLE)):
        assert f"CREATE DATABASE {database} OWNER {owner};" in script, database
        assert f"REVOKE CONNECT ON DATABASE {database} FROM PUBLIC;" in script, database


def test_seaweedfs_start_matches_native(native):
    script = (DOCKER / "seaweedfs" / "start.sh").read_text()
    assert "exec weed mini " in script
    native_command = SeaweedStore(native, secrets=None).command()
    for option in (f"-bucket={native.bucket}", f"-s3.port={native.s3_port}"):
        assert option in script, option
    # Every switch that turns a component off natively is off in the container too.
    for option in native_command:
        if option.endswith(("=0", "=false")):
            assert option in script, option


def test_images_pin_requirement_versions():
    requirements = {}
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            requirements[name.strip()] = version.strip()
    server_image = (DOCKER / "mlflow-server" / "Dockerfile").read_text()
    for name in ("mlflow[auth]", "boto3", "psycopg[binary]"):
        assert f'"{name}=={requirements[name]}"' in server_image, name

    python = yaml.safe_load((REPO_ROOT / "python_env.yaml").read_text())["python"]
    training_image = (DOCKER / "Dockerfile").read_text()
    assert f"FROM python:{python}-slim" in training_image
    assert "pip install -r /tmp/requirements.txt" in training_image


def test_env_example_lists_every_compose_variable():
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", (DOCKER / "compose.yaml").read_text()))
    listed = {line.split("=")[0] for line in (DOCKER / "env.example").read_text().splitlines() if "=" in line and not line.startswith("#")}
    assert used == listed


def test_docker_mlproject_mirrors_root_entry_points(compose):
    from mlflow.projects._project_spec import load_project

    root, docker = load_project(str(REPO_ROOT)), load_project(str(DOCKER / "project"))
    assert sorted(docker._entry_points) == sorted(root._entry_points)
    for name, entry_point in root._entry_points.items():
        mirrored = docker._entry_points[name]
        assert mirrored.command == entry_point.command, name
        assert {key: (p.type, p.default) for key, p in mirrored.parameters.items()} == {key: (p.type, p.default) for key, p in entry_point.parameters.items()}, name
    assert docker.docker_env["image"] == compose["services"]["train"]["image"]
    assert set(docker.docker_env["environment"]) <= CLIENT_VARIABLES


def test_kubernetes_config_parses_with_mlflow(monkeypatch):
    from mlflow.projects import _parse_kubernetes_config

    # MLflow resolves the template path from the working directory: the repository root.
    monkeypatch.chdir(REPO_ROOT)
    config = _parse_kubernetes_config(json.loads((DOCKER / "kubernetes" / "backend-config.json").read_text()))
    job = config["kube-job-template"]
    assert job["kind"] == "Job"
    assert job["metadata"]["namespace"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    secret_variables = {item["name"] for item in container["env"] if "valueFrom" in item}
    assert secret_variables == {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}


def test_server_entrypoint_writes_native_auth_config(tmp_path, native):
    auth_config = tmp_path / "basic_auth.ini"
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "MLFLOW_BACKEND_STORE_URI": f"{POSTGRES_DIALECT}://{TRACKING_ROLE}:secret@postgres:5432/{TRACKING_DATABASE}",
        "MLFLOW_AUTH_CONFIG_PATH": str(auth_config),
    }
    result = subprocess.run(
        ["sh", str(DOCKER / "mlflow-server" / "entrypoint.sh"), "--help"], env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "--app-name" in result.stdout
    assert oct(auth_config.stat().st_mode & 0o777) == "0o600"

    code = "from mlflow.server.auth.config import read_auth_config; c = read_auth_config(); print(c.database_uri, c.default_permission)"
    read = subprocess.run([sys.executable, "-c", code], env={**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(auth_config)}, capture_output=True, text=True, timeout=120)
    assert read.returncode == 0, read.stderr
    database_uri, permission = read.stdout.split()
    assert database_uri == f"{POSTGRES_DIALECT}://{TRACKING_ROLE}:secret@postgres:5432/{AUTH_DATABASE}"
    assert permission == native.default_permission
