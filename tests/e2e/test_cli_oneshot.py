"""End-to-end: the one-shot `hubbub` subcommands, run from shell scripts against a real server."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

HUBBUB = str(Path(sys.executable).parent / "hubbub")
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


def run(
    env: dict[str, str], *args: str, stdin: str | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run `hubbub ARGS` and capture its output."""
    return subprocess.run(
        [HUBBUB, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def one_line_failure(result: subprocess.CompletedProcess[str]) -> str:
    """Assert the command failed with exactly one line on stderr; return that line."""
    assert result.returncode != 0, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture
def env(cli_env: dict[str, str], server_process: Any) -> dict[str, str]:
    """CLI environment pointed at the test server through HUBBUB_SERVER."""
    return {**cli_env, "HUBBUB_SERVER": server_process.address}


def test_script_register_login_send_listen_json(
    env: dict[str, str], tmp_path: Path, password: str
) -> None:
    """A bash script registers two users, logs in, sends, and `listen --json` receives the
    message as one JSON object with the documented fields; every step exits 0."""
    script = tmp_path / "flow.sh"
    script.write_text(
        f"""set -euo pipefail
hubbub={HUBBUB}
echo '{password}' | "$hubbub" register alice --display-name 'Alice A' --password-stdin
echo '{password}' | "$hubbub" register bob --password-stdin
echo '{password}' | "$hubbub" login alice --password-stdin
"$hubbub" send bob 'hello from a script'
echo '{password}' | "$hubbub" login bob --password-stdin
"$hubbub" listen --json --count 1 > "{tmp_path}/listen.out"
"""
    )
    started = datetime.now(UTC)
    result = subprocess.run(
        ["bash", str(script)], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Registered alice.",
        "Registered bob.",
        "Logged in as alice.",
        "The message was sent",
        "Logged in as bob.",
    ]
    assert result.stderr == ""
    lines = (tmp_path / "listen.out").read_text().splitlines()
    assert len(lines) == 1
    message = json.loads(lines[0])
    assert set(message) == {"sequence", "message_id", "sender", "recipient", "body", "send_time"}
    assert message["sequence"] == 1
    assert message["sender"] == "alice"
    assert message["recipient"] == "bob"
    assert message["body"] == "hello from a script"
    sent = datetime.fromisoformat(message["send_time"])
    assert abs(sent - started) < timedelta(minutes=1)


def test_login_saves_a_0600_session_file(
    env: dict[str, str], register_users: Callable[..., None], password: str
) -> None:
    """`login` writes {server, username, token, expire_time} with mode 0600 under
    $XDG_CONFIG_HOME/hubbub/session.json; `logout` revokes and removes it."""
    register_users(env["HUBBUB_SERVER"], "alice")
    assert run(env, "login", "alice", "--password-stdin", stdin=password + "\n").returncode == 0
    path = Path(env["XDG_CONFIG_HOME"]) / "hubbub" / "session.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert set(data) == {"server", "username", "token", "expire_time"}
    assert data["server"] == env["HUBBUB_SERVER"] and data["username"] == "alice"
    assert datetime.fromisoformat(data["expire_time"]) > datetime.now(UTC)

    saved = path.read_text()
    result = run(env, "logout")
    assert result.returncode == 0 and result.stdout == "Logged out.\n"
    assert not path.exists()
    # The old token was revoked on the server, not just forgotten locally.
    path.write_text(saved)
    line = one_line_failure(run(env, "who"))
    assert line == "The server refused the saved login; run 'hubbub login USER' again."


def test_who_plain_all_and_json(
    env: dict[str, str], register_users: Callable[..., None], password: str
) -> None:
    """`who` lists online users like `!who`; `--all` lists every account; `--json` is JSON."""
    register_users(env["HUBBUB_SERVER"], "alice", "bob")
    run(env, "login", "alice", "--password-stdin", stdin=password + "\n")
    result = run(env, "who")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0] == f"There are {len(lines) - 1} online users:"
    assert "echobot" in lines[1:] and "bob" not in lines
    result = run(env, "who", "--all")
    assert result.returncode == 0
    assert "bob (offline)" in result.stdout.splitlines()
    result = run(env, "who", "--all", "--json")
    users = {u["username"]: u for u in json.loads(result.stdout)}
    assert {"alice", "bob", "echobot"} <= set(users)
    assert users["echobot"]["online"] is True and users["echobot"]["bot"] is True
    assert users["alice"]["display_name"] == "Alice"


def test_failures_are_one_line_and_non_zero(
    env: dict[str, str], register_users: Callable[..., None], password: str
) -> None:
    """Wrong password, taken name, unknown recipient, no login and a bad password length each
    exit non-zero with one clear line on stderr."""
    register_users(env["HUBBUB_SERVER"], "alice")
    assert one_line_failure(run(env, "who")) == "Not logged in; run 'hubbub login USER' first."
    line = one_line_failure(run(env, "login", "alice", "--password-stdin", stdin="wrong-pass\n"))
    assert line == "Login failed: wrong username or password."
    line = one_line_failure(run(env, "register", "alice", "--password-stdin", stdin=password))
    assert line == "Cannot register alice: that username is already in use."
    line = one_line_failure(run(env, "register", "carol", "--password-stdin", stdin="short\n"))
    assert line.startswith("Cannot register carol: ")
    run(env, "login", "alice", "--password-stdin", stdin=password + "\n")
    line = one_line_failure(run(env, "send", "nosuchuser", "hi"))
    assert line == "The destination user does not exist"


def test_unreachable_server_is_one_line(env: dict[str, str]) -> None:
    """A server that is not there: one line naming the address, exit 1, no traceback."""
    result = run(env, "--server", "127.0.0.1:9", "register", "zed", "--password-stdin", stdin="x")
    assert one_line_failure(result) == "Cannot reach the Hubbub server at 127.0.0.1:9."


def test_no_terminal_and_no_password_stdin_is_refused(env: dict[str, str]) -> None:
    """Without a terminal `login` does not hang waiting for a password: it says what to do."""
    line = one_line_failure(run(env, "login", "alice", stdin=""))
    assert line == "No terminal to ask the password on; use --password-stdin."


def test_listen_acks_what_it_printed(
    env: dict[str, str], register_users: Callable[..., None], password: str
) -> None:
    """A message printed by `listen` is acknowledged: the next `listen` starts after it."""
    register_users(env["HUBBUB_SERVER"], "alice", "bob")
    run(env, "login", "alice", "--password-stdin", stdin=password + "\n")
    assert run(env, "send", "bob", "first").returncode == 0
    assert run(env, "send", "bob", "second").returncode == 0
    run(env, "login", "bob", "--password-stdin", stdin=password + "\n")
    first = run(env, "listen", "--json", "--count", "1")
    assert first.returncode == 0
    assert json.loads(first.stdout)["body"] == "first"
    second = run(env, "listen", "--json", "--count", "1")
    assert json.loads(second.stdout)["body"] == "second"
    assert json.loads(second.stdout)["sequence"] == 2


def test_listen_prints_live_messages_and_stops_on_sigterm(
    env: dict[str, str], register_users: Callable[..., None], password: str, tmp_path: Path
) -> None:
    """`listen` prints messages as they arrive ([HH:MM] From ...) and exits 0 on SIGTERM."""
    register_users(env["HUBBUB_SERVER"], "alice", "bob")
    bob_env = {**env, "XDG_CONFIG_HOME": str(tmp_path / "bob-config")}
    run(env, "login", "alice", "--password-stdin", stdin=password + "\n")
    run(bob_env, "login", "bob", "--password-stdin", stdin=password + "\n")
    listener = subprocess.Popen(
        [HUBBUB, "listen"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=bob_env
    )
    try:
        deadline = time.monotonic() + 20
        while "bob" not in run(env, "who").stdout.splitlines() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert run(env, "send", "bob", "live one").returncode == 0
        assert listener.stdout is not None
        line = listener.stdout.readline()
        assert line.rstrip("\n").endswith("From alice: live one")
        assert line.startswith("[")
        listener.send_signal(signal.SIGTERM)
        assert listener.wait(15) == 0
        assert listener.stderr is not None and listener.stderr.read() == ""
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()


def test_every_command_has_help() -> None:
    """`hubbub COMMAND --help` works for every command (exit 0, usage text)."""
    for command in ([], ["chat"], ["register"], ["login"], ["logout"], ["who"], ["send"]):
        result = subprocess.run(
            [HUBBUB, *command, "--help"], capture_output=True, text=True, timeout=30, check=False
        )
        assert result.returncode == 0
        assert result.stdout.startswith("usage: hubbub")
    result = subprocess.run(
        [HUBBUB, "listen", "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    assert "--json" in result.stdout and "--count" in result.stdout
