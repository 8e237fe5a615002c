"""Shared fixtures: a real `hubbub-server` subprocess on a free port with a temp database
(tests/harness/server_process.py)."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .harness.server_process import ServerProcess


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
