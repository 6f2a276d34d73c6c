"""Settings of the native tracking stack: addresses, ports, names and secrets.

The stack keeps everything under one state directory::

    <state_dir>/stack.json       these settings, so that ``stop`` and ``status`` find the stack
    <state_dir>/secrets.json     generated database passwords and S3 keys (mode 0600)
    <state_dir>/postgres/        PostgreSQL cluster, socket directory and server log
    <state_dir>/seaweedfs/       SeaweedFS data, S3 identity file and log
    <state_dir>/mlflow/          basic-auth configuration (mode 0600) and server log

Only two secrets come from the environment, because only people need to know them:
the admin password (``MLFLOW_AUTH_ADMIN_PASSWORD``) and the Flask session key
(``MLFLOW_FLASK_SERVER_SECRET_KEY``). Passwords that only the stack itself uses are
generated on the first start and kept in ``secrets.json``.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

# Variables read from the environment of the launcher, never from files in the repository.
ADMIN_PASSWORD_VARIABLE = "MLFLOW_AUTH_ADMIN_PASSWORD"
ADMIN_USERNAME_VARIABLE = "MLFLOW_AUTH_ADMIN_USERNAME"
SECRET_KEY_VARIABLE = "MLFLOW_FLASK_SERVER_SECRET_KEY"

# Databases and roles in the one PostgreSQL cluster. Optuna gets a role of its own, so
# that workers holding its password cannot touch the tracking or user tables.
TRACKING_DATABASE = "mlflow"
AUTH_DATABASE = "mlflow_auth"
OPTUNA_DATABASE = "optuna"
TRACKING_ROLE = "mlflow"
OPTUNA_ROLE = "optuna"
POSTGRES_SUPERUSER = "postgres"

# SQLAlchemy dialect for psycopg 3, the driver that SQLAlchemy 2.1 uses for postgresql://.
POSTGRES_DIALECT = "postgresql+psycopg"

# MLflow's basic authentication rejects shorter passwords (MLflow 3.17.2).
MIN_PASSWORD_LENGTH = 12

PERMISSIONS = ("READ", "EDIT", "MANAGE", "NO_PERMISSIONS")

_STATE_FILE = "stack.json"
_SECRETS_FILE = "secrets.json"


class StackConfigError(ValueError):
    """A stack setting that cannot work, with the rule and the fix."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that was free a moment ago.

    Another process may take the port before the stack binds it. Starting then fails
    with the port in the error message, and a retry picks new ports.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def default_state_dir() -> Path:
    """``$XDG_DATA_HOME/kidney-ssl/tracking-stack``, else under ``~/.local/share``."""
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "kidney-ssl" / "tracking-stack"


@dataclass
class SeaweedPorts:
    """Ports of the SeaweedFS components besides the S3 API.

    The defaults are SeaweedFS's own defaults for ``weed mini`` (SeaweedFS 4.48), with
    each gRPC port 10000 above its HTTP port.
    """

    master: int = 9333
    master_grpc: int = 19333
    volume: int = 9340
    volume_grpc: int = 19340
    filer: int = 8888
    filer_grpc: int = 18888
    s3_grpc: int = 18333
    admin: int = 23646
    admin_grpc: int = 33646

    @classmethod
    def free(cls, host: str) -> "SeaweedPorts":
        return cls(**{item.name: free_port(host) for item in fields(cls)})


@dataclass
class StackConfig:
    """Settings of one stack: its state directory, the address it binds and its ports.

    Every server binds ``host`` only. The default, 127.0.0.1, keeps the stack on this
    machine. Set it to the address of one of this machine's network interfaces to share it.
    """

    state_dir: Path = field(default_factory=default_state_dir)
    host: str = "127.0.0.1"
    mlflow_port: int = 5000
    postgres_port: int = 5432
    s3_port: int = 8333
    seaweed_ports: SeaweedPorts = field(default_factory=SeaweedPorts)
    bucket: str = "mlflow"
    artifact_prefix: str = "artifacts"
    workers: int = 2
    default_permission: str = "READ"

    def __post_init__(self):
        self.state_dir = Path(self.state_dir).expanduser().resolve()
        if isinstance(self.seaweed_ports, dict):
            self.seaweed_ports = SeaweedPorts(**self.seaweed_ports)
        self.validate()

    @classmethod
    def with_free_ports(cls, state_dir: Path, host: str = "127.0.0.1", **settings) -> "StackConfig":
        """Make a configuration whose ports were all free a moment ago, for tests and side-by-side stacks."""
        return cls(
            state_dir=state_dir, host=host, mlflow_port=free_port(host), postgres_port=free_port(host),
            s3_port=free_port(host), seaweed_ports=SeaweedPorts.free(host), **settings,
        )

    def validate(self) -> None:
        ports = {"mlflow_port": self.mlflow_port, "postgres_port": self.postgres_port, "s3_port": self.s3_port}
        ports.update({f"seaweed_ports.{name}": value for name, value in asdict(self.seaweed_ports).items()})
        for name, port in ports.items():
            if not isinstance(port, int) or not 1 <= port <= 65535:
                raise StackConfigError(f"{name}={port!r} is invalid: a TCP port is an integer from 1 to 65535.")
        seen: dict[int, str] = {}
        for name, port in ports.items():
            if port in seen:
                raise StackConfigError(f"{name} and {seen[port]} are both {port}: give every component its own port.")
            seen[port] = name
        if self.workers < 1:
            raise StackConfigError(f"workers={self.workers} is invalid: the MLflow server needs at least 1 worker process.")
        if self.default_permission not in PERMISSIONS:
            raise StackConfigError(f"default_permission={self.default_permission!r} is invalid: use one of {', '.join(PERMISSIONS)}.")
        if not self.bucket or "/" in self.bucket:
            raise StackConfigError(f"bucket={self.bucket!r} is invalid: give a bucket name without '/'.")

    # Addresses derived from the settings.

    @property
    def tracking_uri(self) -> str:
        return f"http://{self.host}:{self.mlflow_port}"

    @property
    def s3_endpoint_url(self) -> str:
        return f"http://{self.host}:{self.s3_port}"

    @property
    def artifacts_destination(self) -> str:
        return f"s3://{self.bucket}/{self.artifact_prefix}" if self.artifact_prefix else f"s3://{self.bucket}"

    # Files under the state directory.

    @property
    def postgres_dir(self) -> Path:
        return self.state_dir / "postgres"

    @property
    def seaweed_dir(self) -> Path:
        return self.state_dir / "seaweedfs"

    @property
    def mlflow_dir(self) -> Path:
        return self.state_dir / "mlflow"

    def save(self) -> Path:
        """Write the settings to ``<state_dir>/stack.json`` and return that path."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        data = asdict(self)
        data["state_dir"] = str(self.state_dir)
        path = self.state_dir / _STATE_FILE
        path.write_text(json.dumps(data, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, state_dir: Path) -> "StackConfig":
        """Read the settings that ``start`` saved in ``state_dir``."""
        path = Path(state_dir).expanduser().resolve() / _STATE_FILE
        if not path.is_file():
            raise StackConfigError(
                f"No stack settings found at {path}: start the stack with this --state-dir first, "
                "or pass the --state-dir that you started it with."
            )
        return cls(**json.loads(path.read_text()))


@dataclass
class StackSecrets:
    """Passwords and keys that only the stack's own components use."""

    postgres_superuser_password: str
    tracking_role_password: str
    optuna_role_password: str
    s3_access_key: str
    s3_secret_key: str

    @classmethod
    def load_or_create(cls, state_dir: Path) -> "StackSecrets":
        """Read ``<state_dir>/secrets.json``, or generate the secrets and write it with mode 0600."""
        path = Path(state_dir) / _SECRETS_FILE
        if path.is_file():
            return cls(**json.loads(path.read_text()))
        generated = cls(
            postgres_superuser_password=secrets.token_urlsafe(24),
            tracking_role_password=secrets.token_urlsafe(24),
            optuna_role_password=secrets.token_urlsafe(24),
            # S3 access key ids are conventionally upper-case letters and digits.
            s3_access_key="KS" + secrets.token_hex(9).upper(),
            s3_secret_key=secrets.token_urlsafe(30),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(asdict(generated), handle, indent=2)
        return generated


@dataclass
class AdminCredentials:
    """The MLflow admin account and the Flask session key, read from the environment."""

    username: str
    password: str
    secret_key: str

    @classmethod
    def from_environment(cls, environ: dict | None = None) -> "AdminCredentials":
        environ = os.environ if environ is None else environ
        missing = [name for name in (ADMIN_PASSWORD_VARIABLE, SECRET_KEY_VARIABLE) if not environ.get(name)]
        if missing:
            raise StackConfigError(
                f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: the MLflow server's basic "
                "authentication needs an admin password and a Flask secret key from the environment. Set them, "
                "for example: export " + " ".join(f"{name}=$(python -c 'import secrets; print(secrets.token_urlsafe(24))')" for name in missing)
            )
        if len(environ[ADMIN_PASSWORD_VARIABLE]) < MIN_PASSWORD_LENGTH:
            raise StackConfigError(
                f"{ADMIN_PASSWORD_VARIABLE} has {len(environ[ADMIN_PASSWORD_VARIABLE])} characters: MLflow's basic "
                f"authentication rejects passwords shorter than {MIN_PASSWORD_LENGTH}. Set a longer one."
            )
        return cls(
            username=environ.get(ADMIN_USERNAME_VARIABLE) or "admin",
            password=environ[ADMIN_PASSWORD_VARIABLE],
            secret_key=environ[SECRET_KEY_VARIABLE],
        )
