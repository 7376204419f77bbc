"""The platform's services as subprocesses of a benchmark, each killable and restartable."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

from bench.chaos.config import ROOT


class ServiceProcess:
    """A service (``smartcity ingest``, ``smartcity rules run``...), as a process of its own."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.log = log
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def start(self) -> None:
        self._log_offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as output:
            self._process = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C on the bench is ours to pass on
            )

    def logged_since_start(self, marker: str) -> bool:
        return self.logged_since(self._log_offset, marker)

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def logged_since(self, offset: int, marker: str) -> bool:
        if not self.log.exists():
            return False
        with self.log.open("rb") as log:
            log.seek(offset)
            return marker.encode() in log.read()

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(10)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # an orphaned child of our own process

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError(f"{self.name} was not started")
        return self._process.pid

    @property
    def exit_code(self) -> int | None:
        return None if self._process is None else self._process.poll()
