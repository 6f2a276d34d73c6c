"""Shared parts of the entry points: argument parsing, failure reporting, demo data."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import mlflow

from tracking.runs import configure_logging

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEMO_DIR_VARIABLE = "KIDNEY_SSL_DEMO_DIR"


class UsageError(ValueError):
    """Parameters that cannot work together, with the fix."""


def expected_errors() -> tuple[type[BaseException], ...]:
    """Errors that come from the user's input and deserve a message, not a traceback."""
    from mlflow.exceptions import MlflowException

    from registry.loading import ModelNotFoundError
    from training.config import ConfigError
    from training.data.images import ImageReadError
    from training.data.labelled import DatasetError

    errors: list[type[BaseException]] = [ConfigError, DatasetError, ImageReadError, ModelNotFoundError, UsageError, ValueError, MlflowException]
    try:
        from tracking.preflight import TrackingServerError

        errors.append(TrackingServerError)
    except ImportError:
        pass
    return tuple(errors)


def parser(description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def optional(text: str | None) -> str | None:
    """Map the empty string that MLproject passes for an unset parameter to None."""
    if text is None:
        return None
    text = str(text).strip()
    return None if text == "" or text.lower() == "none" else text


def parse_bool(text: str | bool | None) -> bool | None:
    if text is None or isinstance(text, bool):
        return text
    value = str(text).strip().lower()
    if value == "":
        return None
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise UsageError(f"Boolean parameter value {text!r} is invalid: use true or false.")


def demo_root() -> Path:
    """Folder for the scikit-image demo data: $KIDNEY_SSL_DEMO_DIR, else the user's cache."""
    if os.environ.get(DEMO_DIR_VARIABLE):
        return Path(os.environ[DEMO_DIR_VARIABLE])
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "kidney-ssl" / "demo"


def demo_paths() -> tuple[Path, Path]:
    """Write the demo data (unlabelled, labelled) and return both folders."""
    from training.data.demo import write_demo_data

    return write_demo_data(demo_root())


def preflight() -> None:
    """Fail fast when the tracking server is unreachable or misconfigured."""
    try:
        from tracking.preflight import check_tracking_server
    except ImportError:
        return
    check_tracking_server()


@contextmanager
def entry_run(entry_point: str, run_name: str | None = None, tags: dict | None = None):
    """Start (or, under ``mlflow run``, resume) the entry point's run.

    An input error ends the run FAILED with its message as the tag ``error`` and exits
    with status 2 after one clear log line instead of a traceback.
    """
    configure_logging()
    preflight()
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.set_tags({"entry_point": entry_point, **(tags or {})})
        try:
            yield run
        except expected_errors() as error:
            message = str(error)
            # Our own error types carry the whole story; others keep their traceback.
            own = type(error).__module__.split(".")[0] in ("training", "tracking", "registry", "mlproject")
            logger.error("%s failed: %s", entry_point, message, exc_info=not own)
            mlflow.set_tag("error", message[:5000])
            mlflow.end_run("FAILED")
            sys.exit(2)
