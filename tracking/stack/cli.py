"""Command line: ``python -m tracking.stack start|stop|status|env|optuna-url``."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from tracking.stack.config import (
    ADMIN_PASSWORD_VARIABLE, ADMIN_USERNAME_VARIABLE, PERMISSIONS, AdminCredentials, StackConfig, StackConfigError, default_state_dir,
)
from tracking.stack.launcher import TrackingStack
from tracking.stack.processes import StackError

logger = logging.getLogger(__name__)

# Options whose value, when given, replaces the saved or default setting of that name.
_SETTINGS = ("host", "mlflow_port", "postgres_port", "s3_port", "workers", "default_permission", "bucket")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tracking.stack",
        description="Start, check and stop the tracking stack (PostgreSQL, SeaweedFS S3, MLflow server with basic "
        f"authentication) on this machine. 'start' reads {ADMIN_PASSWORD_VARIABLE} and "
        "MLFLOW_FLASK_SERVER_SECRET_KEY from the environment.",
    )
    parser.add_argument("command", choices=("start", "stop", "status", "env", "optuna-url"),
                        help="start: start what is not running and wait until it responds; stop: stop everything; "
                        "status: show each component, exit 1 unless all respond; env: print the client variables as "
                        "shell exports; optuna-url: print the Optuna storage URL.")
    parser.add_argument("--state-dir", type=Path, default=default_state_dir(),
                        help="Directory for the databases, the bucket's data, secrets and logs.")
    parser.add_argument("--host", help="Address every server binds (saved setting, else 127.0.0.1).")
    parser.add_argument("--mlflow-port", dest="mlflow_port", type=int, help="MLflow server port (saved setting, else 5000).")
    parser.add_argument("--postgres-port", dest="postgres_port", type=int, help="PostgreSQL port (saved setting, else 5432).")
    parser.add_argument("--s3-port", dest="s3_port", type=int, help="SeaweedFS S3 API port (saved setting, else 8333).")
    parser.add_argument("--free-ports", action="store_true",
                        help="On the first start, pick free ports for every component instead of the defaults.")
    parser.add_argument("--workers", type=int, help="MLflow server worker processes (saved setting, else 2).")
    parser.add_argument("--default-permission", dest="default_permission", choices=PERMISSIONS,
                        help="Permission a user has on an experiment or model without an explicit grant (saved setting, else READ).")
    parser.add_argument("--bucket", help="S3 bucket for artifacts (saved setting, else mlflow).")
    parser.add_argument("-v", "--verbose", action="store_true", help="Log each step.")
    return parser


def resolve_config(args: argparse.Namespace) -> StackConfig:
    """Return the saved settings of ``--state-dir`` (or the defaults), updated with the options given on the command line."""
    try:
        config = StackConfig.load(args.state_dir)
        if args.free_ports:
            logger.warning("--free-ports is ignored: %s keeps the ports of its first start. Pass ports explicitly to change them.", args.state_dir)
    except StackConfigError:
        if args.command != "start":
            raise
        config = StackConfig.with_free_ports(args.state_dir) if args.free_ports else StackConfig(state_dir=args.state_dir)
    overrides = {name: getattr(args, name) for name in _SETTINGS if getattr(args, name) is not None}
    return dataclasses.replace(config, **overrides) if overrides else config


def print_exports(stack: TrackingStack) -> None:
    # The password is referenced, not printed, so the output is safe to keep in a terminal log.
    print(f"export MLFLOW_TRACKING_URI={stack.tracking_uri}")
    print(f'export MLFLOW_TRACKING_USERNAME="${{{ADMIN_USERNAME_VARIABLE}:-admin}}"')
    print(f'export MLFLOW_TRACKING_PASSWORD="${ADMIN_PASSWORD_VARIABLE}"')


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose or args.command in ("start", "stop") else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "start":
            # Check the secrets before anything is written to the state directory.
            AdminCredentials.from_environment()
        stack = TrackingStack(resolve_config(args))
        if args.command == "start":
            stack.start()
            print("Tracking stack is running. Point clients at it with:")
            print_exports(stack)
        elif args.command == "stop":
            stack.stop()
        elif args.command == "status":
            statuses = stack.status()
            for status in statuses:
                if status.ready:
                    state = "ready"
                elif status.running:
                    state = "running, not responding"
                else:
                    state = "stopped"
                print(f"{status.name:<14} {state:<24} {status.address}")
            return 0 if all(status.ready for status in statuses) else 1
        elif args.command == "env":
            print_exports(stack)
        elif args.command == "optuna-url":
            print(stack.optuna_storage_url)
    except (StackError, StackConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
