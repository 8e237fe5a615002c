"""End-to-end: hubbub-server TLS from flags and JSON logs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ..harness.server_process import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]
GRPCURL = str(Path(sys.executable).parent / "grpcurl")


def make_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl); returns (cert, key)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls_from_flags(server_factory: Callable[..., ServerProcess], tmp_path: Path) -> None:
    """With --tls-cert/--tls-key grpcurl connects over TLS (trusting the cert); plaintext fails."""
    cert, key = make_cert(tmp_path)
    server = server_factory("--tls-cert", str(cert), "--tls-key", str(key))
    ok = subprocess.run(
        [GRPCURL, "-cacert", str(cert), "-max-time", "10", server.address, "list"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ok.returncode == 0, ok.stderr
    assert "hubbub.v1.MessengerService" in ok.stdout
    plain = subprocess.run(
        [GRPCURL, "-plaintext", "-max-time", "5", server.address, "list"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert plain.returncode != 0


def test_json_logs(server_factory: Callable[..., ServerProcess]) -> None:
    """--log-format json writes one JSON object per log line, with level, logger and msg."""
    server = server_factory("--log-format", "json")
    lines: list[str] = []
    for _ in range(100):  # the log line follows the "listening on" line
        lines = [line for line in server.log if line.startswith("{")]
        if any("listening" in line for line in lines):
            break
        time.sleep(0.05)
    assert lines, server.log
    entry = json.loads(lines[-1])
    assert {"time", "level", "logger", "msg"} <= set(entry)
    assert "listening" in "".join(json.loads(line)["msg"] for line in lines)


def test_second_server_on_the_same_port_is_refused(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """A second hubbub-server on a port in use exits 1 with one line (no SO_REUSEPORT sharing)."""
    server = server_factory()
    second = subprocess.run(
        [
            str(Path(sys.executable).parent / "hubbub-server"),
            "--port",
            str(server.port),
            "--database",
            str(tmp_path / "other.db"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 1
    assert f"cannot listen on 127.0.0.1:{server.port}" in second.stderr
