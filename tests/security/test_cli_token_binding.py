"""Hole 6 (issue 8): the CLI's saved session token only ever goes to the server it came
from, and passwords/tokens never travel in plaintext to another machine.

A fake gRPC server records the metadata of every call it receives; the real `hubbub`
entry point (`main`) runs in-process against it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent import futures
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from hubbub.client.cli import main
from hubbub.client.session_store import SavedSession, save_session

pytestmark = pytest.mark.timeout(60)

TOKEN = "secret-token-of-alice"


class _Recorder(grpc.GenericRpcHandler):
    """Answers nothing (UNIMPLEMENTED) but records (method, metadata) of every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def service(self, handler_call_details: Any) -> None:
        self.calls.append(
            (handler_call_details.method, dict(handler_call_details.invocation_metadata))
        )
        return None

    def authorizations(self) -> list[str]:
        """Every authorization header any call carried."""
        return [str(md["authorization"]) for _, md in self.calls if "authorization" in md]


@pytest.fixture
def fake_server() -> Iterator[tuple[str, _Recorder]]:
    """A recording gRPC server on 127.0.0.1; yields (address, recorder)."""
    recorder = _Recorder()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((recorder,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", recorder
    finally:
        server.stop(None)


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private XDG_CONFIG_HOME and no HUBBUB_SERVER from the outside."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("HUBBUB_SERVER", raising=False)
    return tmp_path / "config"


def _save(server: str) -> None:
    save_session(SavedSession(server, "alice", TOKEN, datetime.now(UTC) + timedelta(hours=1)))


COMMANDS = [
    ["who"],
    ["who", "--all"],
    ["send", "bob", "hi"],
    ["groups"],
    ["history", "@bob"],
    ["listen", "--count", "1"],
    ["logout"],
    ["group", "leave", "team"],
    ["profile", "--display-name", "A"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_saved_token_is_never_sent_to_a_server_named_with_server_flag(
    command: list[str],
    fake_server: tuple[str, _Recorder],
    config_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`hubbub --server OTHER CMD` with a login saved for another server sends no
    authorization header (and fails with one line naming the saved server)."""
    address, recorder = fake_server
    _save("127.0.0.1:1")
    status = main(["--server", address, *command])
    assert recorder.authorizations() == []
    assert status == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "127.0.0.1:1" in err and "login" in err


def test_saved_token_is_never_sent_to_the_server_in_hubbub_server_env(
    fake_server: tuple[str, _Recorder],
    config_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """$HUBBUB_SERVER pointing elsewhere than the saved login gets no token either."""
    address, recorder = fake_server
    _save("127.0.0.1:1")
    monkeypatch.setenv("HUBBUB_SERVER", address)
    assert main(["who"]) == 1
    assert recorder.authorizations() == []


def test_a_tls_login_is_never_sent_over_plaintext(
    fake_server: tuple[str, _Recorder], config_home: Path
) -> None:
    """A token saved for grpcs://HOST:PORT is not sent to plaintext HOST:PORT (no downgrade)."""
    address, recorder = fake_server
    _save(f"grpcs://{address}")
    assert main(["--server", address, "who"]) == 1
    assert recorder.authorizations() == []


def test_the_saved_server_itself_gets_the_token(
    fake_server: tuple[str, _Recorder], config_home: Path
) -> None:
    """Control: with the same target (or one node of a saved cluster list) the token is sent."""
    address, recorder = fake_server
    _save(f"{address},127.0.0.1:1")
    main(["--server", address, "who"])
    assert recorder.authorizations() == [f"Bearer {TOKEN}"]


def test_login_saves_the_normalised_target(
    config_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The saved `server` is the normalised target (lower-case host, default port, scheme
    for TLS), so the comparison cannot be fooled by spelling."""
    from hubbub.client.target import parse_target

    assert parse_target("LocalHost").key == "localhost:50051"
    assert parse_target("https://Example.org:443/").key == "grpcs://example.org:443"
    assert parse_target(["a:1", "b:2,a:1"]).key == "a:1,b:2"
    session = SavedSession("grpcs://h:1", "alice", TOKEN, datetime.now(UTC), "/ca.pem")
    assert json.loads(session.to_json())["ca_file"] == "/ca.pem"


@pytest.mark.parametrize(
    "argv",
    [
        ["--server", "192.0.2.10:50051", "login", "alice", "--password-stdin"],
        ["--server", "chat.example.org", "register", "alice", "--password-stdin"],
        ["--server", "192.0.2.10:50051"],
        ["--server", "127.0.0.1:50051,192.0.2.10:50051", "chat"],
    ],
    ids=["login", "register", "interactive", "one-remote-node"],
)
def test_plaintext_password_to_another_machine_is_refused(
    argv: list[str],
    config_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without TLS, a password for a non-loopback address is refused before anything is
    sent: exit status 2 and one line pointing to --tls / --insecure."""
    monkeypatch.setattr("sys.stdin", _Lines("password-123\n"))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "plaintext" in err and "--tls" in err and "--insecure" in err


def test_plaintext_token_to_another_machine_is_refused(
    config_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A login saved (with --insecure) for a remote plaintext server is not used without
    --insecure again: exit 2, nothing sent."""
    _save("192.0.2.10:50051")
    assert main(["who"]) == 2
    assert "plaintext" in capsys.readouterr().err


def test_insecure_and_loopback_pass_the_plaintext_check() -> None:
    """--insecure lets plaintext go to another machine; loopback names never need it."""
    import argparse

    from hubbub.client.commands import _target

    remote = argparse.Namespace(server="192.0.2.10:1", tls=False, ca_file="", insecure=True)
    assert _target(remote).key == "192.0.2.10:1"
    for host in ("127.0.0.1:1", "localhost:1", "[::1]:1", "127.8.9.10:1", "app.localhost:1"):
        local = argparse.Namespace(server=host, tls=False, ca_file="", insecure=False)
        assert not _target(local).tls
    tls = argparse.Namespace(server="192.0.2.10:1", tls=True, ca_file="", insecure=False)
    assert _target(tls).key == "grpcs://192.0.2.10:1"


class _Lines:
    """A stdin that is not a terminal and yields the given text."""

    def __init__(self, text: str) -> None:
        self._lines = text.splitlines(keepends=True)

    def readline(self) -> str:
        return self._lines.pop(0) if self._lines else ""

    def isatty(self) -> bool:
        return False
