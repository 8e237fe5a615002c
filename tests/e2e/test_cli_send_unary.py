"""End-to-end (issue 9 item 5): `hubbub send` posts with the unary SendMessage RPC, so it
works while the same user's interactive chat is open and nobody sees them flap
offline/online."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import HUBBUB, PASSWORD, strip_ansi

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


def test_send_while_the_interactive_chat_is_open(
    server_process: Any,
    terminal: Callable[..., Any],
    register_users: Callable[..., None],
    cli_env: dict[str, str],
) -> None:
    """alice chats interactively; a script logged in as alice sends to bob: it prints "The
    message was sent", bob receives it, and bob never sees alice go offline or online."""
    address = server_process.address
    register_users(address, "alice", "bob")
    bob = terminal(address, name="bob")
    bob.login("bob")
    alice = terminal(address, name="alice")
    alice.login("alice")
    bob.expect("* alice is online")
    env = {**cli_env, "HUBBUB_SERVER": address}
    login = subprocess.run(
        [HUBBUB, "login", "alice", "--password-stdin"], input=PASSWORD + "\n", env=env,
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert login.returncode == 0, login.stderr
    mark = bob.mark()
    sent = subprocess.run(
        [HUBBUB, "send", "bob", "from a script"], env=env, capture_output=True, text=True,
        timeout=30, check=False,
    )  # fmt: skip
    assert (sent.returncode, sent.stdout, sent.stderr) == (0, "The message was sent\n", "")
    bob.expect_all("From alice: from a script", since=mark)
    bob.settle(0.5)
    after = strip_ansi(bob.log.getvalue()[mark:])
    assert "* alice is offline" not in after and "* alice is online" not in after
    assert Path(env["XDG_CONFIG_HOME"], "hubbub", "session.json").exists()
