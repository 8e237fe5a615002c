"""End-to-end: the interactive `hubbub` on a pseudo-terminal against a real `hubbub-server`.

Every line of docs/cli.md §Wording is checked to appear exactly when it should.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

Factory = Callable[..., Any]

INCOMING = r"\[(\d\d:\d\d)\] From {sender}: {body}\r?\n"


def test_two_users_chat_both_ways(
    server_process: Any,
    terminal: Factory,
    register_users: Factory,
    hhmm_ok: Callable[[str], bool],
) -> None:
    """alice and bob exchange messages: each sender sees "The message was sent" once, each
    recipient sees `[HH:MM] From <sender>: <text>` once, HH:MM in the client's local time."""
    register_users(server_process.address, "alice", "bob")
    alice = terminal(server_process.address, name="alice")
    alice.login("alice")
    bob = terminal(server_process.address, name="bob")
    bob.login("bob")
    alice.expect("* bob is online")

    alice.sendline("@bob hello bob, how are you?")
    alice.expect("The message was sent")
    match = bob.expect_re(INCOMING.format(sender="alice", body=r"hello bob, how are you\?"))
    assert hhmm_ok(match.group(1))

    bob.sendline("@alice fine, thanks!")
    bob.expect("The message was sent")
    match = alice.expect_re(INCOMING.format(sender="bob", body="fine, thanks!"))
    assert hhmm_ok(match.group(1))

    bob.sendline("!quit")
    assert bob.wait_exit() == 0
    alice.expect("* bob is offline")
    alice.settle()
    assert alice.count("From bob: fine, thanks!") == 1
    assert alice.count("The message was sent") == 1
    assert bob.count("From alice: hello bob, how are you?") == 1
    assert "Traceback" not in alice.transcript() + bob.transcript()


def test_who_lists_online_users(
    server_process: Any, terminal: Factory, register_users: Factory
) -> None:
    """`!who` prints "There are <n> online users:" then one name per line."""
    register_users(server_process.address, "alice", "bob", "carol")
    alice = terminal(server_process.address, name="alice")
    alice.login("alice")
    bob = terminal(server_process.address, name="bob")
    bob.login("bob")
    alice.expect("* bob is online")
    alice.sendline("!who")
    alice.expect_re(r"There are 3 online users:\r?\nalice\r?\nbob\r?\necho")
    alice.settle(0.3)
    assert "carol" not in alice.transcript()


def test_unknown_recipient(server_process: Any, terminal: Factory, register_users: Factory) -> None:
    """A message to a user that does not exist prints "The destination user does not exist"
    and the chat goes on."""
    register_users(server_process.address, "alice")
    alice = terminal(server_process.address)
    alice.login("alice")
    alice.sendline("@nosuchuser hello?")
    alice.expect("The destination user does not exist")
    alice.sendline("@echobot still here")
    alice.expect("From echobot: still here")
    assert alice.count("The message was sent") == 1


def test_echobot_answers(
    server_process: Any, terminal: Factory, register_users: Factory, hhmm_ok: Callable[[str], bool]
) -> None:
    """echobot sends every direct message back to its sender."""
    register_users(server_process.address, "alice")
    alice = terminal(server_process.address)
    alice.login("alice")
    alice.sendline("@echobot ping 123 ünïcode ✓")
    alice.expect("The message was sent")
    match = alice.expect_re(INCOMING.format(sender="echobot", body="ping 123 ünïcode ✓"))
    assert hhmm_ok(match.group(1))


def test_name_already_online_asks_again(
    server_process: Any, terminal: Factory, register_users: Factory
) -> None:
    """Logging in as a user who is online elsewhere prints the "already in use" line and
    asks for a login again without a restart."""
    register_users(server_process.address, "alice", "bob")
    first = terminal(server_process.address, name="first")
    first.login("alice")
    second = terminal(server_process.address, name="second")
    second.expect("Welcome to Chat Client. Enter your login:")
    second.sendline("alice")
    second.expect("Password:")
    second.sendline("correct-horse-42")
    second.expect("Cannot log in as alice. That username is already in use.")
    second.expect("Enter your login:")
    second.login("bob", welcome=False)
    first.expect("* bob is online")
    assert second.count("Successfully logged in as alice!") == 0


def test_disallowed_characters_ask_again(
    server_process: Any, terminal: Factory, register_users: Factory
) -> None:
    """Names with characters outside letters, digits and `_ . -` (including zero-width ones)
    print the "disallowed characters" line and the login is asked again."""
    register_users(server_process.address, "alice")
    term = terminal(server_process.address)
    term.expect("Welcome to Chat Client. Enter your login:")
    for bad in ("al!ce", "b@d", "two words", "ali\u200bce", "#hash", "x*y&z"):
        term.sendline(bad)
        term.expect("That username contains disallowed characters.")
        term.expect("Enter your login:")
    term.settle(0.2)
    assert term.count("Cannot log in as al!ce. That username contains disallowed characters.") == 1
    assert term.count("Password:") == 0
    term.login("alice", welcome=False)


def test_reserved_name_refused_by_server_is_reported_as_disallowed(
    server_process: Any, terminal: Factory
) -> None:
    """A name that passes the local check but that the server refuses (reserved `admin`)
    gets the "disallowed characters" line when the account is to be created."""
    term = terminal(server_process.address)
    term.expect("Welcome to Chat Client. Enter your login:")
    term.sendline("admin")
    term.expect("Password:")
    term.sendline("whatever-password")
    term.expect("Create a new account 'admin'? [y/N]")
    term.sendline("y")
    term.expect("Choose a password:")
    term.sendline("whatever-password")
    term.expect("Repeat the password:")
    term.sendline("whatever-password")
    term.expect("Display name (optional):")
    term.sendline("")
    term.expect("Cannot log in as admin. That username contains disallowed characters.")
    term.expect("Enter your login:")


def test_new_account_is_created_from_the_login_dialogue(
    server_process: Any, terminal: Factory
) -> None:
    """An unknown name offers to create the account; "y", the password twice and a display
    name register it and log in. Answering N asks for a login again."""
    term = terminal(server_process.address)
    term.expect("Welcome to Chat Client. Enter your login:")
    term.sendline("dora")
    term.expect("Password:")
    term.sendline("dora-password")
    term.expect("Create a new account 'dora'? [y/N]")
    term.sendline("n")
    term.expect("Enter your login:")
    term.sendline("dora")
    term.expect("Password:")
    term.sendline("dora-password")
    term.expect("Create a new account 'dora'? [y/N]")
    term.sendline("y")
    term.expect("Choose a password:")
    term.sendline("dora-password")
    term.expect("Repeat the password:")
    term.sendline("dora-password")
    term.expect("Display name (optional):")
    term.sendline("Dora Explorer")
    term.expect("Successfully logged in as dora!")
    term.sendline("!quit")
    assert term.wait_exit() == 0
    assert "dora-password" not in term.transcript()


def test_taken_name_with_wrong_password_is_in_use(
    server_process: Any, terminal: Factory, register_users: Factory
) -> None:
    """Trying to create an account whose name exists (wrong password) prints "already in use"."""
    register_users(server_process.address, "alice")
    term = terminal(server_process.address)
    term.expect("Welcome to Chat Client. Enter your login:")
    term.sendline("alice")
    term.expect("Password:")
    term.sendline("not-alices-password")
    term.expect("Create a new account 'alice'? [y/N]")
    term.sendline("y")
    for prompt in ("Choose a password:", "Repeat the password:"):
        term.expect(prompt)
        term.sendline("not-alices-password")
    term.expect("Display name (optional):")
    term.sendline("")
    term.expect("Cannot log in as alice. That username is already in use.")
    term.expect("Enter your login:")


def test_server_full_exits_non_zero(
    server_factory: Callable[..., Any], terminal: Factory, register_users: Factory
) -> None:
    """With --max-clients 1 a second user gets "Cannot log in. The server is full!" and the
    client exits with status 1."""
    server = server_factory("--max-clients", "1")
    register_users(server.address, "alice", "bob")
    alice = terminal(server.address, name="alice")
    alice.login("alice")
    bob = terminal(server.address, name="bob")
    bob.expect("Welcome to Chat Client. Enter your login:")
    bob.sendline("bob")
    bob.expect("Password:")
    bob.sendline("correct-horse-42")
    bob.expect("Cannot log in. The server is full!")
    assert bob.wait_exit() == 1
    assert bob.count("Successfully logged in") == 0


@pytest.mark.parametrize("how", ["!quit", "ctrl-d"])
def test_quit_at_the_login_prompt(server_process: Any, terminal: Factory, how: str) -> None:
    """`!quit` or Ctrl-D at the login prompt ends the client with status 0."""
    term = terminal(server_process.address)
    term.expect("Welcome to Chat Client. Enter your login:")
    if how == "!quit":
        term.sendline("!quit")
    else:
        term.ctrl_d()
    assert term.wait_exit() == 0
    assert "Traceback" not in term.transcript()


def test_quit_at_the_password_prompt_and_ctrl_d_in_chat(
    server_process: Any, terminal: Factory, register_users: Factory
) -> None:
    """`!quit` at the password prompt exits 0; so does Ctrl-D once logged in."""
    register_users(server_process.address, "alice")
    first = terminal(server_process.address, name="first")
    first.expect("Welcome to Chat Client. Enter your login:")
    first.sendline("alice")
    first.expect("Password:")
    first.sendline("!quit")
    assert first.wait_exit() == 0
    second = terminal(server_process.address, name="second")
    second.login("alice")
    second.ctrl_d()
    assert second.wait_exit() == 0


def test_bad_lines_get_one_clear_line_and_the_prompt_returns(
    server_process: Any, terminal: Factory, register_users: Factory
) -> None:
    """Unknown commands, `@name` without text and plain text each get one explanatory line;
    `!help` lists the commands; the chat keeps working afterwards."""
    register_users(server_process.address, "alice")
    term = terminal(server_process.address)
    term.login("alice")
    term.sendline("!dance")
    term.expect("Unknown command !dance. Type !help for the list.")
    term.sendline("@echobot")
    term.expect("Type a message after @echobot to send it.")
    term.sendline("hello?")
    term.expect("To send a message type @<username> <message>; !help lists the commands.")
    term.sendline("!help")
    term.expect("!who")
    term.expect("!quit")
    term.sendline("@echobot ok")
    term.expect("From echobot: ok")
    assert term.count("The message was sent") == 1
    assert "Traceback" not in term.transcript()


def test_too_long_body_is_rejected(
    server_factory: Callable[..., Any], terminal: Factory, register_users: Factory
) -> None:
    """A body over the server's limit prints "Error: Unknown issue in previous message body."."""
    server = server_factory("--max-message-bytes", "16")
    register_users(server.address, "alice")
    term = terminal(server.address)
    term.login("alice")
    term.sendline("@echobot " + "x" * 40)
    term.expect("Error: Unknown issue in previous message body.")
    term.sendline("@echobot short")
    term.expect("From echobot: short")
    assert term.count("The message was sent") == 1


def test_message_to_offline_user_arrives_at_login(
    server_process: Any,
    terminal: Factory,
    register_users: Factory,
    hhmm_ok: Callable[[str], bool],
) -> None:
    """Messages sent while the recipient is offline are shown, in order and with their
    original time, when the recipient logs in; and not again on the next login."""
    register_users(server_process.address, "alice", "bob")
    alice = terminal(server_process.address, name="alice")
    alice.login("alice")
    for n in range(1, 4):
        alice.sendline(f"@bob offline note {n}")
        alice.expect("The message was sent")
    bob = terminal(server_process.address, name="bob")
    bob.login("bob")
    for n in range(1, 4):
        match = bob.expect_re(INCOMING.format(sender="alice", body=f"offline note {n}"))
        assert hhmm_ok(match.group(1))
    bob.sendline("!quit")
    assert bob.wait_exit() == 0

    again = terminal(server_process.address, name="bob-again")
    again.login("bob")
    again.sendline("@echobot marker")
    again.expect("From echobot: marker")
    assert again.count("offline note") == 0


def test_incoming_lines_do_not_mangle_the_line_being_typed(
    server_process: Any, terminal: Factory, register_users: Factory
) -> None:
    """A message that arrives while a line is half typed prints above it; the half-typed
    text is kept and sent intact when Enter is pressed."""
    register_users(server_process.address, "alice", "bob")
    alice = terminal(server_process.address, name="alice")
    alice.login("alice")
    bob = terminal(server_process.address, name="bob")
    bob.login("bob")
    alice.child.send("@bob half typed")
    alice.settle(0.3)
    bob.sendline("@alice interruption")
    alice.expect("From bob: interruption")
    alice.child.send(" then finished\r")
    alice.expect("The message was sent")
    bob.expect("From alice: half typed then finished")


def test_unreachable_server_is_one_clear_line(terminal: Factory) -> None:
    """A server that is not there: one line saying so, status 1, no traceback."""
    term = terminal("127.0.0.1:9")
    term.expect("Cannot reach the Hubbub server at 127.0.0.1:9.")
    assert term.wait_exit() == 1
    assert "Traceback" not in term.transcript()


def test_server_killed_and_restarted_mid_conversation(
    server_process: Any, terminal: Factory, register_users: Factory
) -> None:
    """SIGKILL the server mid-conversation and start it again (same port and database): both
    clients say the connection was lost (once), reconnect by themselves, a message typed
    while the server was down is delivered, and nothing is lost or shown twice."""
    register_users(server_process.address, "alice", "bob")
    alice = terminal(server_process.address, name="alice")
    alice.login("alice")
    bob = terminal(server_process.address, name="bob")
    bob.login("bob")
    alice.expect("* bob is online")
    for n in (1, 2):
        alice.sendline(f"@bob before crash {n}")
        bob.expect(f"From alice: before crash {n}")
    bob.sendline("@alice reply before crash")
    alice.expect("From bob: reply before crash")

    server_process.stop(signal.SIGKILL)
    alice.expect("* Connection lost; reconnecting…")
    bob.expect("* Connection lost; reconnecting…")
    alice.sendline("@bob sent while down")
    alice.settle(1.0)

    server_process.start()
    alice.expect("* Reconnected")
    bob.expect("* Reconnected")
    bob.expect("From alice: sent while down")
    alice.sendline("@bob after restart")
    bob.expect("From alice: after restart")
    bob.sendline("@alice after restart too")
    alice.expect("From bob: after restart too")
    alice.settle()
    bob.settle()

    for n in (1, 2):
        assert bob.count(f"From alice: before crash {n}") == 1
    assert bob.count("From alice: sent while down") == 1
    assert bob.count("From alice: after restart") == 1
    assert alice.count("From bob: reply before crash") == 1
    assert alice.count("From bob: after restart too") == 1
    # before crash 1, 2, sent while down, after restart: one confirmation each.
    assert alice.count("The message was sent") == 4
    for term in (alice, bob):
        assert term.count("* Connection lost; reconnecting…") == 1
        assert term.count("* Reconnected") == 1
        assert "Traceback" not in term.transcript()


def test_graceful_shutdown_is_announced_and_survived(
    server_process: Any, terminal: Factory, register_users: Factory
) -> None:
    """A SIGTERM'd server (GoingAway) is reported once; the client comes back on restart."""
    register_users(server_process.address, "alice")
    alice = terminal(server_process.address)
    alice.login("alice")
    server_process.stop(signal.SIGTERM)
    alice.expect("* Connection lost; reconnecting…")
    server_process.start()
    alice.expect("* Reconnected")
    alice.sendline("@echobot back")
    alice.expect("From echobot: back")
    alice.settle()
    assert alice.count("* Connection lost; reconnecting…") == 1
    assert alice.count("From echobot: back") == 1
