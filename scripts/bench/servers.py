"""Server subprocesses: the relay and hubbub-server, started on a free port and stopped."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import grpc

from hubbub.v1 import messenger_pb2 as pb
from hubbub.v1 import messenger_pb2_grpc as pb_grpc

from .config import HOST, PASSWORD, RPC_TIMEOUT_S, START_TIMEOUT_S, STOP_TIMEOUT_S
from .procstat import REPO_ROOT


@dataclass
class ServerProcess:
    """A server subprocess with its address (``host:port``) and stderr log."""

    name: str
    proc: asyncio.subprocess.Process
    address: str
    log_path: Path
    log_file: TextIO

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.proc.pid

    async def stop(self) -> int | None:
        """SIGTERM, wait up to STOP_TIMEOUT_S seconds, then SIGKILL; returns the exit code."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                self.proc.kill()
                await asyncio.wait_for(self.proc.wait(), STOP_TIMEOUT_S)
        self.log_file.close()
        return self.proc.returncode

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the server's stderr."""
        self.log_file.flush()
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def _open_log(path: Path) -> TextIO:
    """Open a server's stderr log (sync: kept out of the event loop's coroutines)."""
    return path.open("w")


def relay_command() -> list[str]:
    """The argv of the baseline relay (``python -m scripts.bench.relay``, cwd = repo root)."""
    return [sys.executable, "-m", "scripts.bench.relay"]


def hubbub_command(
    *, database: Path | None = None, postgres_url: str = "", redis_url: str = ""
) -> list[str]:
    """The argv of ``hubbub-server`` on a free port: SQLite ``database`` or PostgreSQL
    (+ Redis for several nodes)."""
    exe = Path(sys.executable).parent / "hubbub-server"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "hubbub.server.cli"]
    storage = (
        ["--postgres-url", postgres_url] + (["--redis-url", redis_url] if redis_url else [])
        if postgres_url
        else ["--database", str(database)]
    )
    return [
        *cmd,
        "--host",
        HOST,
        "--port",
        "0",
        *storage,
        "--log-level",
        "WARNING",
        "--grace",
        "2",
        # every bench user registers and logs in from this one address
        "--register-limit",
        "1000000 per hour",
        "--login-address-limit",
        "1000000 per 15 minutes",
    ]


async def start_server_process(name: str, argv: list[str], log_dir: Path) -> ServerProcess:
    """Start ``argv`` and wait (≤ START_TIMEOUT_S s) for its ``listening on H:P`` line.

    Raises:
        RuntimeError: the server exited or did not print its address in time.
    """
    log_path = log_dir / f"{name}-server.log"
    log_file = _open_log(log_path)
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=log_file,
        stdin=asyncio.subprocess.DEVNULL,
        cwd=REPO_ROOT,
    )
    server = ServerProcess(name, proc, "", log_path, log_file)
    assert proc.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            line = await asyncio.wait_for(
                proc.stdout.readline(), max(0.1, deadline - time.monotonic())
            )
            if not line:
                break
            text = line.decode(errors="replace").strip()
            if text.startswith("listening on "):
                _, port = text.removeprefix("listening on ").rsplit(":", 1)
                server.address = f"{HOST}:{int(port)}"
                return server
    except TimeoutError:
        pass
    await server.stop()
    raise RuntimeError(f"{name} server did not start:\n{server.log_tail()}")


async def register_all(address: str, names: list[str]) -> dict[str, str]:
    """Register and log in ``names`` through the API (argon2id, ~60 ms each); name → token."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.MessengerServiceStub(channel)
        limit = asyncio.Semaphore(4)

        async def one(name: str) -> tuple[str, str]:
            """Register then log in ``name``; returns (name, token)."""
            async with limit:
                await stub.Register(
                    pb.RegisterRequest(username=name, password=PASSWORD), timeout=RPC_TIMEOUT_S
                )
                reply = await stub.Login(
                    pb.LoginRequest(username=name, password=PASSWORD), timeout=RPC_TIMEOUT_S
                )
                return name, reply.token

        return dict(await asyncio.gather(*(one(n) for n in names)))
