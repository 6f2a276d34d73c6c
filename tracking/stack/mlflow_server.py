"""The MLflow tracking server: PostgreSQL backend, S3 artifact proxy, basic authentication."""

from __future__ import annotations

import logging
import os
import sys

import requests

from tracking.stack.config import (
    ADMIN_PASSWORD_VARIABLE, ADMIN_USERNAME_VARIABLE, SECRET_KEY_VARIABLE, AdminCredentials, StackConfig,
    StackSecrets,
)
from tracking.stack.postgres import PostgresServer
from tracking.stack.processes import ManagedProcess, StackError

logger = logging.getLogger(__name__)

# Every variable the server process gets from the launcher. The Compose file gives its
# MLflow service the same names, and a test keeps the two in step.
SERVER_ENVIRONMENT_VARIABLES = (
    "MLFLOW_BACKEND_STORE_URI",
    "MLFLOW_ARTIFACTS_DESTINATION",
    "MLFLOW_S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "MLFLOW_AUTH_CONFIG_PATH",
    ADMIN_USERNAME_VARIABLE,
    ADMIN_PASSWORD_VARIABLE,
    SECRET_KEY_VARIABLE,
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION",
)

# Prefixes of variables that the server must not inherit from the launcher's shell:
# client settings and other S3 or AWS credentials would override or mix with its own.
_NOT_INHERITED = ("MLFLOW_", "AWS_")


def server_command(config: StackConfig) -> list[str]:
    """Build the ``mlflow server`` command line. Addresses that contain passwords go in the environment instead."""
    return [
        sys.executable, "-m", "mlflow", "server",
        "--host", config.host, "--port", str(config.mlflow_port),
        "--workers", str(config.workers),
        "--app-name", "basic-auth",
        "--serve-artifacts",
        # Without a limit, uvicorn waits on stop for every client's keep-alive connection to close.
        "--uvicorn-opts", "--timeout-graceful-shutdown 5",
    ]


def auth_config_text(config: StackConfig, postgres: PostgresServer) -> str:
    """Build the basic-auth configuration file: the users database and the permission of new users."""
    return (
        "[mlflow]\n"
        f"default_permission = {config.default_permission}\n"
        f"database_uri = {postgres.auth_url}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )


def server_environment(config: StackConfig, secrets: StackSecrets, admin: AdminCredentials, postgres: PostgresServer) -> dict[str, str]:
    """Values of SERVER_ENVIRONMENT_VARIABLES for the native stack."""
    return {
        "MLFLOW_BACKEND_STORE_URI": postgres.tracking_url,
        "MLFLOW_ARTIFACTS_DESTINATION": config.artifacts_destination,
        "MLFLOW_S3_ENDPOINT_URL": config.s3_endpoint_url,
        "AWS_ACCESS_KEY_ID": secrets.s3_access_key,
        "AWS_SECRET_ACCESS_KEY": secrets.s3_secret_key,
        "MLFLOW_AUTH_CONFIG_PATH": str(config.mlflow_dir / "basic_auth.ini"),
        ADMIN_USERNAME_VARIABLE: admin.username,
        ADMIN_PASSWORD_VARIABLE: admin.password,
        SECRET_KEY_VARIABLE: admin.secret_key,
        # The server would otherwise start eight job-runner processes that this project never uses.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }


class MlflowServer:
    """``mlflow server`` under ``<state_dir>/mlflow``."""

    def __init__(self, config: StackConfig, secrets: StackSecrets, postgres: PostgresServer):
        self.config = config
        self.secrets = secrets
        self.postgres = postgres
        self.root = config.mlflow_dir
        self.auth_config_file = self.root / "basic_auth.ini"
        marker = f"mlflow server --host {config.host} --port {config.mlflow_port}"
        self.process = ManagedProcess("MLflow server", self.root / "server.pid", self.root / "server.log", marker=marker)

    def _write_auth_config(self) -> None:
        # The file contains the database password, so only the launcher's user may read it.
        descriptor = os.open(self.auth_config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(auth_config_text(self.config, self.postgres))

    def is_ready(self) -> bool:
        """Return True when the server's health endpoint responds with HTTP 200."""
        try:
            return requests.get(f"{self.config.tracking_uri}/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def check_admin(self, admin: AdminCredentials) -> None:
        """Raise StackError unless the server accepts the admin credentials from the environment."""
        response = requests.get(
            f"{self.config.tracking_uri}/api/2.0/mlflow/users/get", params={"username": admin.username},
            auth=(admin.username, admin.password), timeout=10,
        )
        if response.status_code == 401:
            raise StackError(
                f"The MLflow server rejects the admin user {admin.username!r} with the password in {ADMIN_PASSWORD_VARIABLE}. "
                "The admin account was created on the first start and keeps its first password: set "
                f"{ADMIN_PASSWORD_VARIABLE} to that password, or change it with MLflow's update-password API."
            )
        if response.status_code != 200:
            raise StackError(f"Checking the admin user failed: HTTP {response.status_code} from {response.url}: {response.text[:300]}")

    def start(self, admin: AdminCredentials, timeout: float = 120.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        self._write_auth_config()
        if self.process.is_running():
            logger.info("The MLflow server is already running (process %d).", self.process.pid())
        else:
            inherited = {key: value for key, value in os.environ.items() if not key.startswith(_NOT_INHERITED)}
            environment = {**inherited, **server_environment(self.config, self.secrets, admin, self.postgres)}
            self.process.start(server_command(self.config), env=environment, cwd=self.root)
        self.process.wait_until(self.is_ready, timeout, f"answering {self.config.tracking_uri}/health")
        self.check_admin(admin)
        logger.info("The MLflow server is ready on %s.", self.config.tracking_uri)

    def stop(self, timeout: float = 30.0) -> None:
        self.process.stop(timeout)
