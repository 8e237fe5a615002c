"""A server subprocess started on a free port and stopped: the one way tests and scripts run
``hubbub-server`` (and the bench's baseline relay) as a separate process.

Used by the ``server_factory`` fixture (tests/conftest.py), the fault harness
(tests/harness/torture.py, cluster.py), ``python -m scripts.torture`` and
``python -m scripts.bench``. Scripts import it as ``tests.harness.server_process``:
they run with ``python -m`` from the repository root, which puts the root on
``sys.path``. No pytest here, so scripts do not need it.

The program must accept ``--host H --port P`` and print ``listening on H:P`` on stdout
once it accepts connections (``hubbub-server``: server/cli.py; the relay:
scripts/bench/relay.py). Its stdout and stderr are read line by line by a daemon
thread into :attr:`ServerProcess.log` (and ``log_path`` if given), so it never blocks
on a full pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

VENV_BIN = Path(sys.executable).parent
LISTEN_LINE = re.compile(r"listening on (\S+):(\d+)")


def hubbub_server_program() -> list[str]:
    """The argv prefix that runs ``hubbub-server`` of this interpreter's environment
    (``python -m hubbub.server.cli`` if the console script is not installed)."""
    exe = VENV_BIN / "hubbub-server"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "hubbub.server.cli"]


@dataclass
class ServerProcess:
    """A server subprocess; :attr:`address` is ``"host:port"`` once started.

    Args:
        database: ``--database`` (SQLite file); None for none (e.g. ``--postgres-url`` in
            ``args``).
        args: further flags, after ``--host``/``--port``/``--database``.
        program: argv prefix (default: ``hubbub-server``, see :func:`hubbub_server_program`).
        host: ``--host``.
        port: ``--port``; 0 asks for a free port, and a restart reuses the one it got.
        name: label for error messages and log files.
        log_path: also write every output line to this file (truncated at the first start).
        cwd: working directory of the process (None: this process's).
    """

    database: Path | None = None
    args: list[str] = field(default_factory=list)
    program: list[str] = field(default_factory=hubbub_server_program)
    host: str = "127.0.0.1"
    port: int = 0
    name: str = "hubbub-server"
    log_path: Path | None = None
    cwd: Path | None = None
    proc: subprocess.Popen[str] | None = None
    log: list[str] = field(default_factory=list)  # every output line, all runs
    _log_file: TextIO | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        """The "host:port" the server listens on."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        """The process id of the current run.

        Raises:
            RuntimeError: not started.
        """
        if self.proc is None:
            raise RuntimeError(f"{self.name} is not started")
        return self.proc.pid

    def command(self) -> list[str]:
        """The argv of the next start."""
        database = [] if self.database is None else ["--database", str(self.database)]
        return [
            *self.program,
            "--host",
            self.host,
            "--port",
            str(self.port),
            *database,
            *self.args,
        ]

    def start(self, timeout: float = 30.0) -> None:
        """Start the server (on the same port as before if it ran already) and wait until
        it prints that it listens; blocks (use :meth:`start_async` in a coroutine).

        Args:
            timeout: seconds to wait for the ``listening on`` line.

        Raises:
            RuntimeError: it exited or did not listen within ``timeout`` (the message
                holds its output; it is killed).
        """
        if self.log_path is not None and self._log_file is None:
            self._log_file = self.log_path.open("w")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=self.cwd,
        )
        self.proc = proc
        listening = threading.Event()
        run_start = len(self.log)
        threading.Thread(
            target=self._drain, args=(proc, listening), name=f"{self.name}-output", daemon=True
        ).start()
        deadline = time.monotonic() + timeout
        while not listening.wait(0.05):
            if proc.poll() is not None or time.monotonic() > deadline:
                how = "exited early" if proc.poll() is not None else "did not start"
                self._kill()
                output = "".join(self.log[run_start:])
                raise RuntimeError(f"{self.name} {how}:\n{output}")

    def _drain(self, proc: subprocess.Popen[str], listening: threading.Event) -> None:
        """Append each output line to the log; set ``listening`` at the ``listening on``
        line (and take the port from it)."""
        assert proc.stdout is not None
        for line in proc.stdout:
            self.log.append(line)
            log_file = self._log_file
            if log_file is not None:
                with contextlib.suppress(ValueError):  # closed by close_log meanwhile
                    log_file.write(line)
                    log_file.flush()
            if not listening.is_set():
                m = LISTEN_LINE.search(line)
                if m:
                    self.port = int(m.group(2))
                    listening.set()

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Send ``sig``, wait up to ``timeout`` seconds for the exit (then SIGKILL and wait
        again); returns the exit status (None if never started). Blocks."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return self.proc.returncode

    async def start_async(self, within_s: float = 30.0) -> None:
        """:meth:`start` (``timeout=within_s``) in a worker thread: the event loop runs on."""
        await asyncio.to_thread(self.start, within_s)

    async def stop_async(self, sig: int = signal.SIGTERM, within_s: float = 15.0) -> int | None:
        """:meth:`stop` (``timeout=within_s``) in a worker thread; returns the exit status."""
        return await asyncio.to_thread(self.stop, sig, within_s)

    def close_log(self) -> None:
        """Close ``log_path`` (after the last stop)."""
        log_file, self._log_file = self._log_file, None
        if log_file is not None:
            log_file.close()

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` output lines (all runs), joined."""
        return "".join(self.log[-lines:])
