"""Starting, finding and stopping the stack's server processes."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Sequence

logger = logging.getLogger(__name__)


class StackError(RuntimeError):
    """A stack component that failed to start, respond or stop, with its log and the fix."""


def read_tail(path: Path, lines: int = 25) -> str:
    """Return the last ``lines`` lines of a log file, or a note that it does not exist."""
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _process_state(pid: int) -> str | None:
    """Return the kernel's one-letter state of ``pid`` (R, S, Z, ...), or None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name in brackets may contain spaces, so split after its closing bracket.
    return stat.rsplit(")", 1)[1].split()[0]


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


class ManagedProcess:
    """A server started in its own session, found again later through its pid file.

    ``marker`` is a string that the process's command line contains (its data
    directory, for instance), so a pid file left behind after a reboot never leads to
    signalling an unrelated process that reuses the pid.
    """

    def __init__(self, name: str, pid_file: Path, log_file: Path, marker: str):
        self.name = name
        self.pid_file = Path(pid_file)
        self.log_file = Path(log_file)
        self.marker = marker
        self._popen: subprocess.Popen | None = None

    def start(self, command: Sequence[str], env: dict[str, str], cwd: Path | None = None) -> int:
        """Start ``command`` detached from this process's session, logging to ``log_file``."""
        if self.pid() is not None:
            raise StackError(
                f"{self.name} is already running as process {self.pid()} (pid file {self.pid_file}). "
                "Stop the stack first, or use another --state-dir."
            )
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            self._popen = subprocess.Popen(
                list(command), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, cwd=cwd, start_new_session=True,
            )
        self.pid_file.write_text(f"{self._popen.pid}\n")
        logger.info("Started %s as process %d; log: %s", self.name, self._popen.pid, self.log_file)
        return self._popen.pid

    def pid(self) -> int | None:
        """Return the pid of the running process, or None when it is not running."""
        if self._popen is not None:
            # A process this launcher started is tracked by its handle, because between
            # fork and exec /proc/<pid>/cmdline still shows this Python's command line.
            return None if self._popen.poll() is not None else self._popen.pid
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        state = _process_state(pid)
        if state is None or state in ("Z", "X") or self.marker not in _command_line(pid):
            return None
        return pid

    def is_running(self) -> bool:
        return self.pid() is not None

    def stop(self, timeout: float = 20.0) -> None:
        """Send SIGTERM to the process group, then SIGKILL if it is still there after ``timeout`` seconds."""
        pid = self.pid()
        if pid is None:
            logger.info("%s is not running.", self.name)
            self.pid_file.unlink(missing_ok=True)
            return
        logger.info("Stopping %s (process %d).", self.name, pid)
        os.killpg(pid, signal.SIGTERM)
        if not self._wait_for_exit(timeout):
            logger.warning("%s did not exit %.0f s after SIGTERM; sending SIGKILL.", self.name, timeout)
            os.killpg(pid, signal.SIGKILL)
            self._wait_for_exit(10.0)
        self.pid_file.unlink(missing_ok=True)
        logger.info("Stopped %s.", self.name)

    def _wait_for_exit(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid() is None:
                return True
            time.sleep(0.1)
        return self.pid() is None

    def wait_until(self, check: Callable[[], bool], timeout: float, condition: str) -> None:
        """Poll ``check`` until it returns True; raise StackError if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.is_running():
                raise StackError(
                    f"{self.name} exited while starting, before it was {condition}. Its log {self.log_file} ends with:\n"
                    f"{read_tail(self.log_file)}"
                )
            if check():
                return
            if time.monotonic() > deadline:
                raise StackError(
                    f"{self.name} was not {condition} after {timeout:.0f} s. Its log {self.log_file} ends with:\n"
                    f"{read_tail(self.log_file)}"
                )
            time.sleep(0.25)
