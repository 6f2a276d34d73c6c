"""Starting, checking and stopping the whole stack in dependency order."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from tracking.stack.config import AdminCredentials, StackConfig, StackSecrets
from tracking.stack.mlflow_server import MlflowServer
from tracking.stack.postgres import PostgresServer
from tracking.stack.processes import StackError
from tracking.stack.seaweed import SeaweedStore

logger = logging.getLogger(__name__)


@dataclass
class ComponentStatus:
    """State and address of one component: whether its process runs and whether it responds."""

    name: str
    running: bool
    ready: bool
    address: str


class TrackingStack:
    """PostgreSQL, SeaweedFS and an authenticated MLflow server on one machine.

    ``start`` brings up PostgreSQL, then SeaweedFS, then the MLflow server, and
    returns once each responds to a real request. ``stop`` goes in reverse order. The
    settings are saved in the state directory, so a later process can call
    ``TrackingStack.load(state_dir).stop()``.
    """

    def __init__(self, config: StackConfig):
        self.config = config
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        # PostgreSQL runs as the user postgres when the launcher is root, so other users may
        # pass through this directory. They cannot list it, and the secret files are mode 0600.
        self.config.state_dir.chmod(0o711)
        self.secrets = StackSecrets.load_or_create(config.state_dir)
        self.postgres = PostgresServer(config, self.secrets)
        self.seaweed = SeaweedStore(config, self.secrets)
        self.mlflow = MlflowServer(config, self.secrets, self.postgres)

    @classmethod
    def load(cls, state_dir: Path) -> "TrackingStack":
        return cls(StackConfig.load(state_dir))

    # Addresses for clients.

    @property
    def tracking_uri(self) -> str:
        return self.config.tracking_uri

    @property
    def optuna_storage_url(self) -> str:
        """SQLAlchemy URL of the Optuna database, for ``optuna.create_study(storage=...)``."""
        return self.postgres.optuna_url

    def client_environment(self, username: str, password: str) -> dict[str, str]:
        """MLflow's standard client variables for this server; clients need no S3 keys."""
        return {"MLFLOW_TRACKING_URI": self.tracking_uri, "MLFLOW_TRACKING_USERNAME": username, "MLFLOW_TRACKING_PASSWORD": password}

    # Life cycle.

    def start(self, environ: dict | None = None) -> None:
        """Start every component that is not running and wait until each one responds."""
        admin = AdminCredentials.from_environment(os.environ if environ is None else environ)
        self.config.save()
        try:
            self.postgres.start()
            self.seaweed.start()
            self.mlflow.start(admin)
        except (StackError, OSError):
            logger.error("Starting the stack failed; stopping the components that did start.")
            try:
                self.stop()
            except StackError as stop_error:
                logger.error("%s", stop_error)
            raise
        logger.info("Tracking stack is up: MLFLOW_TRACKING_URI=%s, state in %s.", self.tracking_uri, self.config.state_dir)

    def stop(self) -> None:
        """Stop the MLflow server, SeaweedFS and PostgreSQL. A component that is not running is skipped."""
        errors = []
        for component in (self.mlflow, self.seaweed, self.postgres):
            try:
                component.stop()
            except (StackError, OSError) as error:
                logger.error("Stopping %s failed: %s", type(component).__name__, error)
                errors.append(str(error))
        if errors:
            raise StackError("Stopping the stack failed:\n" + "\n".join(errors))

    def status(self) -> list[ComponentStatus]:
        config = self.config
        return [
            ComponentStatus("PostgreSQL", self.postgres.is_running(), self.postgres.is_ready(), f"{config.host}:{config.postgres_port}"),
            ComponentStatus("SeaweedFS S3", self.seaweed.process.is_running(), self.seaweed.is_ready(), config.s3_endpoint_url),
            ComponentStatus("MLflow server", self.mlflow.process.is_running(), self.mlflow.is_ready(), config.tracking_uri),
        ]
