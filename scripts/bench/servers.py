"""Server subprocesses: the relay and hubbub-server, started on a free port and stopped
(through the ServerProcess the tests use, tests/harness/server_process.py)."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import grpc

from hubbub.v1 import messenger_pb2 as pb
from hubbub.v1 import messenger_pb2_grpc as pb_grpc
from tests.harness.server_process import ServerProcess, hubbub_server_program

from .config import HOST, PASSWORD, RPC_TIMEOUT_S, START_TIMEOUT_S, STOP_TIMEOUT_S
from .procstat import REPO_ROOT

__all__ = ["ServerProcess", "hubbub_args", "register_all", "start_server_process"]


def relay_program() -> list[str]:
    """The argv prefix of the baseline relay (``python -m scripts.bench.relay``, cwd = repo
    root)."""
    return [sys.executable, "-m", "scripts.bench.relay"]


def hubbub_args(*, postgres_url: str = "", redis_url: str = "") -> list[str]:
    """``hubbub-server`` flags for the bench: PostgreSQL (+ Redis for several nodes) if
    ``postgres_url`` is set, quiet logs, a short grace period, and throttles wide open."""
    storage = (
        ["--postgres-url", postgres_url] + (["--redis-url", redis_url] if redis_url else [])
        if postgres_url
        else []
    )
    return [
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


async def start_server_process(
    name: str,
    log_dir: Path,
    *,
    relay: bool = False,
    database: Path | None = None,
    postgres_url: str = "",
    redis_url: str = "",
) -> ServerProcess:
    """Start the relay (``relay=True``) or ``hubbub-server`` on a free port (SQLite
    ``database``, or ``postgres_url`` + ``redis_url``) and wait (≤ START_TIMEOUT_S s) until
    it listens; its output goes to ``log_dir/<name>-server.log``.

    Raises:
        RuntimeError: the server exited or did not print its address in time.
    """
    server = ServerProcess(
        database=None if relay else database,
        args=[] if relay else hubbub_args(postgres_url=postgres_url, redis_url=redis_url),
        program=relay_program() if relay else hubbub_server_program(),
        host=HOST,
        name=name,
        log_path=log_dir / f"{name}-server.log",
        cwd=REPO_ROOT,
    )
    try:
        await server.start_async(START_TIMEOUT_S)
    except RuntimeError:
        server.close_log()
        raise
    return server


async def stop_server_process(server: ServerProcess) -> int | None:
    """SIGTERM, wait up to STOP_TIMEOUT_S seconds, then SIGKILL; returns the exit code."""
    code = await server.stop_async(signal.SIGTERM, STOP_TIMEOUT_S)
    server.close_log()
    return code


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
