"""Helpers for running the project's entry points with ``mlflow run``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

TINY_CONFIG = Path(__file__).with_name("tiny.yaml")


def mlflow_run(entry_point: str, cwd: Path, check: bool = True, **parameters) -> subprocess.CompletedProcess:
    """Run ``mlflow run <repo> -e <entry_point>`` in ``cwd`` with the test's tracking store."""
    parameters.setdefault("config", str(TINY_CONFIG))
    command = [sys.executable, "-m", "mlflow", "run", str(REPO_ROOT), "-e", entry_point, "--env-manager", "local"]
    for key, value in parameters.items():
        command += ["-P", f"{key}={value}"]
    env = dict(os.environ)
    # The entry point's command calls `python`: the interpreter running the tests.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        pytest.fail(f"mlflow run -e {entry_point} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result
