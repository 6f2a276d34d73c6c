"""Run set-up shared by the entry points: logging, configuration and seeds."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import mlflow

from training.config import flatten, to_yaml

logger = logging.getLogger(__name__)

# MLflow caps a param value at 6000 characters; longer values are cut with a marker.
_MAX_PARAM_LENGTH = 6000


def configure_logging(level: int = logging.INFO) -> None:
    """Log to stderr with timestamps, and quiet TensorFlow's C++ start-up messages."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def log_params_once(params: Mapping[str, Any]) -> None:
    """Log params, keeping those already logged (for example by ``mlflow run``).

    MLflow rejects a changed value for an existing param, so a value that differs
    from the logged one goes to ``<key>_resolved`` instead; ``mlflow run`` logs an
    empty parameter as ``''``, and the entry point then records what it used.
    """
    run = mlflow.active_run()
    existing = mlflow.get_run(run.info.run_id).data.params if run else {}
    fresh = {}
    for key, value in params.items():
        text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
        if len(text) > _MAX_PARAM_LENGTH:
            text = text[: _MAX_PARAM_LENGTH - 3] + "..."
        if key in existing:
            if existing[key] != text and f"{key}_resolved" not in existing:
                fresh[f"{key}_resolved"] = text
            continue
        fresh[key] = text
    if fresh:
        mlflow.log_params(fresh)


def log_config(config: Mapping, extra_params: Mapping[str, Any] | None = None) -> None:
    """Log the resolved configuration as ``config.yaml`` and as flattened params."""
    mlflow.log_text(to_yaml(config), "config.yaml")
    log_params_once({**flatten(config), **(extra_params or {})})


def log_json(content: Any, artifact_file: str) -> None:
    mlflow.log_text(content if isinstance(content, str) else json.dumps(content, indent=2), artifact_file)


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """Yield a temporary folder for files that are logged before the block ends, then remove it.

    A ``tune`` search trains many runs in one process, so each run's checkpoints must go
    when that run has logged them, not when the process exits.
    """
    with tempfile.TemporaryDirectory(prefix=prefix, ignore_cleanup_errors=True) as folder:
        yield Path(folder)


def set_seed(seed: int) -> None:
    import keras

    keras.utils.set_random_seed(int(seed))
