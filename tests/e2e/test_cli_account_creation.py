"""End-to-end: creating an account from the interactive login dialogue keeps the password
typed at the login prompt (README "Chatting with the CLI")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

Factory = Callable[..., Any]


def test_enter_keeps_the_password_typed_at_login(server_process: Any, terminal: Factory) -> None:
    """A new user types the password at "Password:", answers y, presses Enter at "Choose a
    password:" and repeats it once: the account is created with that password."""
    term = terminal(server_process.address, name="new")
    term.expect("Welcome to Chat Client. Enter your login:")
    term.sendline("erin")
    term.expect("Password:")
    term.sendline("erin-first-password")
    term.expect("Create a new account 'erin'? [y/N]")
    term.sendline("y")
    term.expect("Choose a password:")
    term.sendline("")
    term.expect("Repeat the password:")
    term.sendline("erin-first-password")
    term.expect("Display name (optional):")
    term.sendline("")
    term.expect("Successfully logged in as erin!")
    term.sendline("!quit")
    assert term.wait_exit() == 0
    assert term.count("Press Enter to keep the password you just typed.") == 1

    again = terminal(server_process.address, name="again")
    again.login("erin", "erin-first-password")
    again.sendline("!quit")
    assert again.wait_exit() == 0
