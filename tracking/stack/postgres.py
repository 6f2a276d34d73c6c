"""PostgreSQL from the Debian package as the stack's backend store.

One cluster contains three databases: ``mlflow`` (runs and the model registry),
``mlflow_auth`` (users and permissions of the server's basic authentication) and
``optuna`` (Optuna studies, reached with a role of its own). PostgreSQL refuses to
run as root, so when the launcher is root the cluster belongs to the OS user
``postgres`` that the Debian package creates.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote

from tracking.stack.config import (
    AUTH_DATABASE, OPTUNA_DATABASE, OPTUNA_ROLE, POSTGRES_DIALECT, POSTGRES_SUPERUSER, TRACKING_DATABASE,
    TRACKING_ROLE, StackConfig, StackSecrets,
)
from tracking.stack.processes import StackError, read_tail

logger = logging.getLogger(__name__)

POSTGRES_OS_USER = "postgres"
_INSTALL_HINT = "Install the Debian package postgresql (apt-get install -y postgresql) or run .ci/services.sh."


def find_postgres_bindir() -> Path:
    """Return the directory holding ``initdb`` and ``pg_ctl``.

    Debian keeps them in ``/usr/lib/postgresql/<major>/bin``, off the PATH, so that
    directory is searched (newest major version first) after the PATH.
    """
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    versions = []
    for bindir in Path("/usr/lib/postgresql").glob("*/bin"):
        if (bindir / "pg_ctl").exists() and (bindir / "initdb").exists() and re.fullmatch(r"\d+", bindir.parent.name):
            versions.append((int(bindir.parent.name), bindir))
    if not versions:
        raise StackError(f"PostgreSQL server programs (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql/*/bin. {_INSTALL_HINT}")
    return max(versions)[1]


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


class PostgresServer:
    """The stack's PostgreSQL cluster under ``<state_dir>/postgres``."""

    def __init__(self, config: StackConfig, secrets: StackSecrets):
        self.config = config
        self.secrets = secrets
        self.root = config.postgres_dir
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.log_file = self.root / "server.log"

    # Addresses for clients.

    def url(self, role: str, password: str, database: str) -> str:
        """SQLAlchemy URL of ``database`` for ``role``, as MLflow and Optuna take it."""
        return f"{POSTGRES_DIALECT}://{quote(role, safe='')}:{quote(password, safe='')}@{self.config.host}:{self.config.postgres_port}/{database}"

    @property
    def tracking_url(self) -> str:
        return self.url(TRACKING_ROLE, self.secrets.tracking_role_password, TRACKING_DATABASE)

    @property
    def auth_url(self) -> str:
        return self.url(TRACKING_ROLE, self.secrets.tracking_role_password, AUTH_DATABASE)

    @property
    def optuna_url(self) -> str:
        return self.url(OPTUNA_ROLE, self.secrets.optuna_role_password, OPTUNA_DATABASE)

    # Running commands as the cluster's owner.

    def _as_owner(self, command: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return command
        runuser = shutil.which("runuser")
        if runuser is None:
            raise StackError("runuser not found: as root the launcher needs it to run PostgreSQL as the user postgres. Install util-linux.")
        return [runuser, "-u", POSTGRES_OS_USER, "--", *command]

    def _run(self, command: list[str], timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run(
            self._as_owner(command), cwd=self.root, capture_output=True, text=True, timeout=timeout,
            env={**os.environ, "LC_ALL": "C"},
        )

    def _prepare_directories(self) -> None:
        """Create the cluster's directories and hand them to the user ``postgres`` when running as root."""
        for directory in (self.root, self.socket_dir):
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o700)
        if os.geteuid() != 0:
            return
        try:
            owner = pwd.getpwnam(POSTGRES_OS_USER)
        except KeyError:
            raise StackError(f"The OS user {POSTGRES_OS_USER!r} does not exist. {_INSTALL_HINT}") from None
        for directory in (self.root, self.socket_dir, *([self.data_dir] if self.data_dir.exists() else [])):
            os.chown(directory, owner.pw_uid, owner.pw_gid)
        reachable = subprocess.run(self._as_owner(["test", "-w", str(self.root)]), capture_output=True)
        if reachable.returncode != 0:
            raise StackError(
                f"PostgreSQL runs as the OS user {POSTGRES_OS_USER!r}, which cannot reach {self.root}: a parent directory "
                "is not searchable for other users. Choose a --state-dir whose parents have the x bit for others "
                "(for example under /tmp or /var/lib), or chmod o+x the parents."
            )

    def _initdb(self, bindir: Path) -> None:
        password_file = self.root / "superuser-password"
        descriptor = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(self.secrets.postgres_superuser_password + "\n")
        if os.geteuid() == 0:
            owner = pwd.getpwnam(POSTGRES_OS_USER)
            os.chown(password_file, owner.pw_uid, owner.pw_gid)
        try:
            result = self._run(
                [str(bindir / "initdb"), "-D", str(self.data_dir), "-U", POSTGRES_SUPERUSER, f"--pwfile={password_file}",
                 "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C"],
                timeout=120,
            )
        finally:
            password_file.unlink(missing_ok=True)
        if result.returncode != 0:
            raise StackError(f"initdb failed for {self.data_dir} (exit {result.returncode}):\n{result.stdout}{result.stderr}")
        if not _is_loopback(self.config.host):
            # NOTE: initdb admits TCP clients from loopback only. A stack shared on the network also
            # admits clients on the subnets of this machine's interfaces, with a password.
            with open(self.data_dir / "pg_hba.conf", "a") as hba:
                hba.write("host all all samenet scram-sha-256\n")
        logger.info("Initialised the PostgreSQL cluster in %s.", self.data_dir)

    def _server_options(self) -> str:
        options = [
            "-c", f"listen_addresses={self.config.host}",
            "-p", str(self.config.postgres_port),
            "-c", f"unix_socket_directories={self.socket_dir}",
        ]
        return " ".join(shlex.quote(option) for option in options)

    # Life cycle.

    def is_running(self) -> bool:
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        result = self._run([str(find_postgres_bindir() / "pg_ctl"), "status", "-D", str(self.data_dir)], timeout=30)
        return result.returncode == 0

    def is_ready(self) -> bool:
        """Return True when the server accepts a password login and runs a query."""
        import psycopg

        try:
            with psycopg.connect(self._superuser_conninfo(), connect_timeout=3) as connection:
                connection.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    def start(self, timeout: float = 60.0) -> None:
        """Initialise the cluster on first use, start it and create the roles and databases."""
        bindir = find_postgres_bindir()
        self._prepare_directories()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(bindir)
        if self.is_running():
            logger.info("PostgreSQL is already running on %s:%d.", self.config.host, self.config.postgres_port)
        else:
            result = self._run(
                [str(bindir / "pg_ctl"), "start", "-D", str(self.data_dir), "-l", str(self.log_file), "-w",
                 "-t", str(int(timeout)), "-o", self._server_options()],
                timeout=timeout + 10,
            )
            if result.returncode != 0:
                raise StackError(
                    f"PostgreSQL failed to start on {self.config.host}:{self.config.postgres_port} (pg_ctl exit "
                    f"{result.returncode}): {result.stderr.strip()}. If the port is taken, pass another --postgres-port. "
                    f"The server log {self.log_file} ends with:\n{read_tail(self.log_file)}"
                )
            logger.info("PostgreSQL is running on %s:%d.", self.config.host, self.config.postgres_port)
        self.ensure_databases()

    def stop(self, timeout: float = 60.0) -> None:
        if not self.is_running():
            logger.info("PostgreSQL is not running.")
            return
        result = self._run(
            [str(find_postgres_bindir() / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", str(int(timeout))],
            timeout=timeout + 10,
        )
        if result.returncode != 0:
            raise StackError(f"pg_ctl stop failed for {self.data_dir} (exit {result.returncode}): {result.stderr.strip()}")
        logger.info("Stopped PostgreSQL.")

    # Roles and databases.

    def _superuser_conninfo(self) -> str:
        from psycopg.conninfo import make_conninfo

        return make_conninfo(
            host=self.config.host, port=self.config.postgres_port, user=POSTGRES_SUPERUSER,
            password=self.secrets.postgres_superuser_password, dbname="postgres",
        )

    def ensure_databases(self) -> None:
        """Create or update the roles and databases; safe to repeat on every start."""
        import psycopg

        try:
            self._create_roles_and_databases()
        except psycopg.Error as error:
            raise StackError(
                f"Creating the roles and databases on {self.config.host}:{self.config.postgres_port} failed: {error}. "
                f"The server log {self.log_file} ends with:\n{read_tail(self.log_file)}"
            ) from error

    def _create_roles_and_databases(self) -> None:
        import psycopg
        from psycopg import sql

        roles = {TRACKING_ROLE: self.secrets.tracking_role_password, OPTUNA_ROLE: self.secrets.optuna_role_password}
        databases = {TRACKING_DATABASE: TRACKING_ROLE, AUTH_DATABASE: TRACKING_ROLE, OPTUNA_DATABASE: OPTUNA_ROLE}
        with psycopg.connect(self._superuser_conninfo(), connect_timeout=5, autocommit=True) as connection:
            for role, password in roles.items():
                exists = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
                statement = "ALTER ROLE {} WITH LOGIN PASSWORD {}" if exists else "CREATE ROLE {} WITH LOGIN PASSWORD {}"
                connection.execute(sql.SQL(statement).format(sql.Identifier(role), sql.Literal(password)))
            for database, owner in databases.items():
                exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
                if not exists:
                    connection.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(owner)))
                    logger.info("Created database %s owned by %s.", database, owner)
                # Only the owner may connect, so the Optuna role cannot read the tracking data.
                connection.execute(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(sql.Identifier(database)))
