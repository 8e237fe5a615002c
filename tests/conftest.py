"""Shared fixtures: a real `hubbub-server` subprocess on a free port with a temp database."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent
LISTEN_LINE = re.compile(r"listening on (\S+):(\d+)")


@dataclass
class ServerProcess:
    """A running `hubbub-server` subprocess; `address` is "127.0.0.1:PORT"."""

    database: Path
    args: list[str]
    proc: subprocess.Popen[str] | None = None
    host: str = "127.0.0.1"
    port: int = 0
    log: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        """The "host:port" the server listens on."""
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        """Start the server (same port as before, if it ran already); wait until it listens."""
        cmd = [
            str(VENV_BIN / "hubbub-server"),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--database",
            str(self.database),
            *self.args,
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("hubbub-server exited early:\n" + "".join(self.log))
            self.log.append(line)
            m = LISTEN_LINE.search(line)
            if m:
                self.port = int(m.group(2))
                # Keep draining output so the server never blocks on a full pipe.
                import threading

                threading.Thread(target=self._drain, daemon=True).start()
                return
        raise RuntimeError("hubbub-server did not start:\n" + "".join(self.log))

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Signal the server and wait for it to exit; returns its exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start `hubbub-server` subprocesses with extra flags; all are stopped at teardown."""
    started: list[ServerProcess] = []

    def start(*args: str, database: Path | None = None) -> ServerProcess:
        db = database or tmp_path / f"hubbub-{len(started)}.db"
        server = ServerProcess(database=db, args=list(args))
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop(signal.SIGKILL)


@pytest.fixture
def server_process(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    """One running `hubbub-server` subprocess with default flags."""
    return server_factory()
