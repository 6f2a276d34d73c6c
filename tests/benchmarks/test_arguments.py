"""Argument checks of the benchmark script that run before any measurement."""

from __future__ import annotations

import pytest

from tests.benchmarks.run_benchmarks import figure_arguments, parse_args


def test_output_folder_rejected(tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--output", str(tmp_path)])
    assert "is a folder" in capsys.readouterr().err


def test_output_under_file_rejected(tmp_path, capsys):
    blocker = tmp_path / "results"
    blocker.write_text("")
    with pytest.raises(SystemExit):
        parse_args(["--json", str(blocker / "raw.json")])
    assert f"{blocker} is a file" in capsys.readouterr().err


def test_output_in_new_folder_accepted(tmp_path):
    args = parse_args(["--output", str(tmp_path / "new" / "page.md")])
    assert args.output == tmp_path / "new" / "page.md"


def test_reproduce_command_drops_output_options():
    argv = ["--repeats", "3", "--json", "/tmp/raw.json", "--workdir=/tmp/work", "--keep-workdir", "--tasks", "simclr"]
    assert figure_arguments(argv) == ["--repeats", "3", "--tasks", "simclr"]
