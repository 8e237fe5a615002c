"""Hole 6 (issue 8): the CLI speaks TLS to a TLS hubbub-server (--ca-file, --tls with the
system roots, grpcs:// addresses), and the saved login keeps using TLS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ..harness.server_process import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

HUBBUB = str(Path(sys.executable).parent / "hubbub")
PASSWORD = "correct-horse-42"


def make_cert(directory: Path) -> tuple[Path, Path]:
    """The README's test certificate: P-256, CN=localhost, SAN localhost and 127.0.0.1."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "30", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def run(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `hubbub ARGS`, capturing its output."""
    return subprocess.run(
        [HUBBUB, *args], input=stdin, capture_output=True, text=True, env=env, timeout=60,
        check=False,
    )  # fmt: skip


@pytest.fixture
def tls_server(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> tuple[ServerProcess, Path]:
    """A hubbub-server speaking TLS with a fresh self-signed certificate; (server, cert)."""
    cert, key = make_cert(tmp_path)
    return server_factory("--tls-cert", str(cert), "--tls-key", str(key)), cert


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """CLI environment with a private config directory and no HUBBUB_SERVER."""
    config = tmp_path / "xdg"
    config.mkdir()
    out = {**os.environ, "XDG_CONFIG_HOME": str(config)}
    out.pop("HUBBUB_SERVER", None)
    out.pop("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", None)
    return out


def test_cli_over_tls_with_ca_file_and_the_saved_login_keeps_tls(
    tls_server: tuple[ServerProcess, Path], env: dict[str, str]
) -> None:
    """register/login with --ca-file over TLS; the saved login names grpcs://… and its CA
    file, so `who` and `send` without flags use TLS again; plaintext cannot talk to it."""
    server, cert = tls_server
    port = server.port
    tls_args = ["--server", f"localhost:{port}", "--ca-file", str(cert)]
    for name in ("alice", "bob"):
        result = run(env, *tls_args, "register", name, "--password-stdin", stdin=PASSWORD + "\n")
        assert result.returncode == 0, result.stderr
    result = run(env, *tls_args, "login", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    saved = json.loads((Path(env["XDG_CONFIG_HOME"]) / "hubbub" / "session.json").read_text())
    assert saved["server"] == f"grpcs://localhost:{port}"
    assert saved["ca_file"] == str(cert)

    who = run(env, "who", "--all")
    assert who.returncode == 0, who.stderr
    assert "alice (online)" in who.stdout or "alice (offline)" in who.stdout
    sent = run(env, "send", "bob", "over tls")
    assert (sent.returncode, sent.stdout) == (0, "The message was sent\n"), sent.stderr

    plain = run(env, "--server", f"127.0.0.1:{port}", "login", "alice", "--password-stdin",
                stdin=PASSWORD + "\n")  # fmt: skip
    assert plain.returncode == 1
    assert "Logged in" not in plain.stdout


def test_tls_flag_uses_the_system_roots_and_grpcs_scheme_works(
    tls_server: tuple[ServerProcess, Path], env: dict[str, str]
) -> None:
    """`--tls` trusts the system roots (grpc's GRPC_DEFAULT_SSL_ROOTS_FILE_PATH stands in
    for them here), a grpcs:// address is the same, and an untrusted certificate fails."""
    server, cert = tls_server
    untrusted = run(env, "--server", f"localhost:{server.port}", "--tls", "register", "carol",
                    "--password-stdin", stdin=PASSWORD + "\n")  # fmt: skip
    assert untrusted.returncode == 1
    assert len(untrusted.stderr.splitlines()) == 1 and "Traceback" not in untrusted.stderr

    trusted = {**env, "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(cert)}
    result = run(trusted, "--server", f"localhost:{server.port}", "--tls", "register", "carol",
                 "--password-stdin", stdin=PASSWORD + "\n")  # fmt: skip
    assert result.returncode == 0, result.stderr
    result = run(trusted, "--server", f"grpcs://127.0.0.1:{server.port}", "login", "carol",
                 "--password-stdin", stdin=PASSWORD + "\n")  # fmt: skip
    assert (result.returncode, result.stdout) == (0, "Logged in as carol.\n"), result.stderr
