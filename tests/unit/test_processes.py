"""ManagedProcess: which process a pid file names, before and after exec."""

from __future__ import annotations

import time
from pathlib import Path

from tracking.stack.processes import ManagedProcess


def _managed(tmp_path: Path, marker: str) -> ManagedProcess:
    return ManagedProcess("sleeper", tmp_path / "sleep.pid", tmp_path / "sleep.log", marker=marker)


def _wait_for(condition, seconds: float = 5.0) -> bool:
    """Poll ``condition`` every 50 ms until it is true or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_started_process_running_before_exec(tmp_path):
    # Between fork and exec the child's command line is still this Python's, so the
    # launcher that started it trusts its process handle instead.
    process = _managed(tmp_path, marker="a string in no command line")
    process.start(["sleep", "30"], env={"PATH": "/usr/bin:/bin"})
    try:
        assert process.is_running()
        # Another launcher reading the pid file checks the marker, so a reused pid is
        # never taken for the server.
        assert not _managed(tmp_path, marker="a string in no command line").is_running()
    finally:
        process.stop(timeout=5)
    assert not process.is_running()
    assert not (tmp_path / "sleep.pid").exists()


def test_pid_file_found_by_marker(tmp_path):
    process = _managed(tmp_path, marker="sleep 31")
    process.start(["sleep", "31"], env={"PATH": "/usr/bin:/bin"})
    try:
        other = _managed(tmp_path, marker="sleep 31")
        # Before exec the child's command line has no marker, so wait until it is sleep.
        assert _wait_for(other.is_running)
        assert other.pid() == process.pid()

        other.stop(timeout=5)
        # A dying process loses its command line before its parent can reap it.
        assert _wait_for(lambda: not process.is_running())
    finally:
        process.stop(timeout=5)
