"""The benchmark script runs end to end with minimal settings and writes a well-formed page.

The figures themselves are not checked: speed targets live on the benchmarks page,
never in timed tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, shared_dataset
from tests.benchmarks.report import BEGIN_MARKER, END_MARKER

pytestmark = pytest.mark.slow


def table_rows(page: str, heading: str) -> list[list[str]]:
    """Return the cells of every row of the table under ``heading``, header included."""
    section = page.split(heading, 1)[1].split("\n### ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines if not line.startswith("|---")]


def test_minimal_run_writes_page(tmp_path):
    output = tmp_path / "benchmarks.md"
    output.write_text("# Benchmarks\n\nKept text.\n\n" + BEGIN_MARKER + "\nold figures\n" + END_MARKER + "\n\n## Findings\n\nKept too.\n")
    raw = tmp_path / "raw.json"
    command = [
        sys.executable, "-m", "tests.benchmarks.run_benchmarks", "--repeats", "1", "--steps", "2", "--epochs", "1",
        "--warmup-epochs", "0", "--loads", "1", "--tasks", "simclr", "--variants", "tracked",
        "--data-dir", str(shared_dataset("kidney-multistain-patches")), "--output", str(output), "--json", str(raw),
        "--workdir", str(tmp_path / "work"),
    ]
    result = subprocess.run(command, cwd=REPO_ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]

    page = output.read_text()
    assert page.startswith("# Benchmarks\n\nKept text.")
    assert page.rstrip().endswith("Kept too.")
    assert "old figures" not in page
    assert page.count(BEGIN_MARKER) == 1
    assert page.count(END_MARKER) == 1
    assert "python -m tests.benchmarks.run_benchmarks --repeats 1" in page
    # Output locations are this run's own, so the reproduce command leaves them out.
    assert "--json" not in page
    assert "--workdir" not in page

    throughput = table_rows(page, "### Training throughput")
    assert len(throughput) == 2
    assert throughput[1][0] == "simclr"
    assert len(throughput[1]) == len(throughput[0])
    assert float(throughput[1][4].split()[0]) > 0

    tracking = table_rows(page, "### MLflow logging overhead")
    assert len(tracking) == 2
    assert float(tracking[1][5].split()[0]) > 0

    loads = table_rows(page, "### Loading an encoder")
    assert loads[1][0] == "`unet-encoder-simclr@champion`"
    assert float(loads[1][1].split()[0]) > 0
    assert float(loads[1][2].split()[0]) > 0

    memory = table_rows(page, "### Peak memory")
    assert len(memory) == 4
    assert all(float(row[2].split()[0]) > 0 for row in memory[1:])
    assert "### Mixed precision and XLA" in page

    measurements = json.loads(raw.read_text())["results"]
    assert [m["spec"]["kind"] for m in measurements] == ["training", "load", "load"]
    assert len(measurements[0]["epochs"]) == 1


def test_gpu_rows_run_on_cpu(tmp_path):
    # The XLA-off and mixed-float16 rows are meant for GPUs. Forcing them on a CPU checks
    # that their code path runs before a GPU machine tries it.
    output = tmp_path / "benchmarks.md"
    command = [
        sys.executable, "-m", "tests.benchmarks.run_benchmarks", "--repeats", "1", "--steps", "2", "--epochs", "1",
        "--warmup-epochs", "0", "--loads", "1", "--tasks", "segment", "--variants", "tracked", "--gpu-rows", "always",
        "--labelled-dir", str(shared_dataset("glomeruli-pas-aidpath")), "--output", str(output),
        "--workdir", str(tmp_path / "work"),
    ]
    result = subprocess.run(command, cwd=REPO_ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]

    page = output.read_text()
    modes = [row[1] for row in table_rows(page, "### Training throughput")[1:]]
    assert modes == ["default", "float32, XLA off", "mixed float16"]
    assert "ran without a GPU" in page
