"""End-to-end: with `--log-format json` every line hubbub-server writes to stderr is JSON,
gRPC's own (C-core) log lines included."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ..harness.server_process import LISTEN_LINE, VENV_BIN

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


def _server(tmp_path: Path, port: int, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            str(VENV_BIN / "hubbub-server"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--database",
            str(tmp_path / "hubbub.db"),
            "--log-format",
            "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
    )


def _records(stderr: str) -> list[dict[str, Any]]:
    """Every stderr line parsed as a JSON object (fails on the first line that is not)."""
    records = []
    for line in stderr.splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"stderr line is not JSON: {line!r}\nstderr:\n{stderr}")
    return records


def test_grpc_core_lines_are_json_records(tmp_path: Path) -> None:
    """GRPC_VERBOSITY=info makes gRPC's C core log at start-up; that line arrives on stderr
    as a JSON record (logger grpc.core, level WARNING, source file:line) like every other."""
    server = _server(tmp_path, 0, GRPC_VERBOSITY="info")
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert LISTEN_LINE.search(line), line
        # SIGINT ends the server with status 0 whether or not its handler is installed yet.
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=30)
    finally:
        server.kill()
    assert server.returncode == 0
    records = _records(stderr)
    core = [r for r in records if r["logger"] == "grpc.core"]
    assert any("Log level INFO is not suitable for production" in r["msg"] for r in core), stderr
    assert all(r["level"] in {"INFO", "WARNING", "ERROR"} and "source" in r for r in core)
    assert any(r["logger"].startswith("hubbub.server.") for r in records), stderr


def test_failure_to_listen_is_reported_in_json(tmp_path: Path) -> None:
    """A port in use: gRPC's bind error and the server's own last line are JSON too."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = _server(tmp_path, taken.getsockname()[1])
        _, stderr = server.communicate(timeout=30)
    assert server.returncode == 1
    records = _records(stderr)
    assert any(r["logger"] == "grpc.core" and r["level"] == "ERROR" for r in records), stderr
    assert any(
        r["logger"] == "stderr" and r["msg"].startswith("hubbub-server: cannot listen on")
        for r in records
    ), stderr
