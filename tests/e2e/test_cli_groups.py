"""End-to-end: groups, history, delivery receipts, display names, passwords and random
recipients through the real `hubbub` CLI (interactive on pseudo-terminals, and one-shots
from a shell script) against a real `hubbub-server`."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import HUBBUB

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

Factory = Callable[..., Any]

HHMM = r"\[\d\d:\d\d\]"
DATED = r"\[\d{4}-\d\d-\d\d \d\d:\d\d\]"
NL = r"\r?\n"


def test_three_person_group_chat(
    server_process: Any, terminal: Factory, register_users: Factory
) -> None:
    """alice, bob and carol (three `hubbub` processes): a group is created, announced to all,
    messages reach the other members only, a member leaves (announced), `!groups` and
    `!history` list the state in order, a direct message gets a delivery receipt, `!random`
    picks one of the others, and a new display name shows in another user's `!who`."""
    address = server_process.address
    register_users(address, "alice", "bob", "carol")
    alice = terminal(address, name="alice")
    alice.login("alice")
    bob = terminal(address, name="bob")
    bob.login("bob")
    carol = terminal(address, name="carol")
    carol.login("carol")
    alice.expect_all("* bob is online", "* carol is online")

    # Creation: alice gets the answer to her command; the others get the announcement.
    alice.sendline("!create team bob carol")
    alice.expect("Group #team created with alice, bob, carol.")
    bob.expect("* alice created #team (alice, bob, carol)")
    carol.expect("* alice created #team (alice, bob, carol)")

    # Group messages reach every other member, named with the group.
    alice.sendline("#team hello")
    alice.expect("The message was sent")
    bob.expect_re(rf"{HHMM} From alice in #team: hello{NL}")
    carol.expect_re(rf"{HHMM} From alice in #team: hello{NL}")
    bob.sendline("#team hi")
    bob.expect("The message was sent")
    alice.expect_re(rf"{HHMM} From bob in #team: hi{NL}")
    carol.expect_re(rf"{HHMM} From bob in #team: hi{NL}")

    carol.sendline("!groups")
    carol.expect_re(rf"You are in 1 group:{NL}#team: alice, bob, carol{NL}")

    # Leaving is announced to those who stay.
    carol.sendline("!leave team")
    carol.expect("You left #team.")
    alice.expect("* carol left #team")
    bob.expect("* carol left #team")
    alice.sendline("!groups")
    alice.expect_re(rf"You are in 1 group:{NL}#team: alice, bob{NL}")

    alice.sendline("!history #team 10")
    alice.expect_re(
        rf"History of #team \(newest last\):{NL}{DATED} alice: hello{NL}{DATED} bob: hi{NL}"
    )

    # A direct message shown by bob's client comes back to alice as a receipt.
    alice.sendline("@bob are you there?")
    alice.expect("The message was sent")
    bob.expect_re(rf"{HHMM} From alice: are you there\?{NL}")
    alice.expect("✓ delivered to bob")

    # A random recipient is one of the two others online (never echobot), and named.
    alice.sendline("!random surprise")
    picked = alice.expect_re(rf"The message was sent to (bob|carol){NL}").group(1)
    receiver = bob if picked == "bob" else carol
    receiver.expect_re(rf"{HHMM} From alice: surprise{NL}")
    alice.expect(f"✓ delivered to {picked}")

    # A display name shows next to the username in another user's !who.
    bob.sendline("!name Bobby Tables")
    bob.expect("Your display name is now Bobby Tables.")
    alice.sendline("!who")
    alice.expect_re(
        rf"There are 4 online users:{NL}alice{NL}bob \(Bobby Tables\){NL}carol{NL}echobot"
    )

    for term in (alice, bob, carol):
        term.sendline("!quit")
        assert term.wait_exit() == 0
    # Nobody sees their own group message echoed; each message arrived once.
    assert "From alice in #team" not in alice.transcript()
    assert "From bob in #team" not in bob.transcript()
    assert bob.count("From alice in #team: hello") == 1
    assert carol.count("From alice in #team: hello") == 1
    assert carol.count("From bob in #team: hi") == 1
    assert alice.count("✓ delivered to bob") == 1 + (picked == "bob")
    for term in (alice, bob, carol):
        assert "Traceback" not in term.transcript()


def test_group_refusals_are_one_clear_line_each(
    server_process: Any, terminal: Factory, register_users: Factory
) -> None:
    """A taken group name, an unknown member, an unknown group and acting on a group one is
    not in each print one line naming the problem; the chat goes on."""
    address = server_process.address
    register_users(address, "alice", "bob")
    alice = terminal(address, name="alice")
    alice.login("alice")
    bob = terminal(address, name="bob")
    bob.login("bob")
    alice.sendline("!create team")
    alice.expect("Group #team created with alice.")

    bob.sendline("!create Team")
    bob.expect("The group name #Team is already taken.")
    bob.sendline("!create other alice ghost")
    bob.expect("The user 'ghost' does not exist.")
    bob.sendline("!leave nope")
    bob.expect("The group #nope does not exist.")
    bob.sendline("!add team bob")
    bob.expect("You are not a member of #team.")
    bob.sendline("!leave team")
    bob.expect("You are not a member of #team.")
    bob.sendline("!history #team")
    bob.expect("You are not a member of #team.")
    bob.sendline("#team let me in")
    bob.expect("You are not a member of #team.")
    bob.sendline("#nope hello")
    bob.expect("The group #nope does not exist.")
    bob.sendline("!history @ghost")
    bob.expect("The user 'ghost' does not exist.")
    bob.sendline("!create")
    bob.expect("Type !create <group> <user>… to create a group with you and these users.")
    bob.sendline("!history @alice")
    bob.expect_re(rf"History with alice \(newest last\):{NL}No messages yet\.{NL}")
    bob.sendline("@echobot still fine")
    bob.expect("From echobot: still fine")
    bob.settle(0.3)
    assert bob.count("The message was sent") == 1
    assert "Traceback" not in bob.transcript()


def test_random_with_nobody_else_online(
    server_process: Any, terminal: Factory, register_users: Factory
) -> None:
    """`!random` when only the sender (and echobot) is online prints "Nobody else is online."."""
    register_users(server_process.address, "alice")
    alice = terminal(server_process.address)
    alice.login("alice")
    alice.sendline("!random anyone there?")
    alice.expect("Nobody else is online.")
    alice.sendline("@echobot ok")
    alice.expect("From echobot: ok")
    assert alice.count("The message was sent") == 1


def test_receipt_of_a_message_read_while_the_sender_was_away(
    server_process: Any, terminal: Factory, register_users: Factory
) -> None:
    """A message read while its sender was offline is reported `✓ delivered to bob` when
    the sender comes back, once; presence lines show a differing display name."""
    address = server_process.address
    register_users(address, "alice", "bob")
    alice = terminal(address, name="alice")
    alice.login("alice")
    alice.sendline("!name Alice Liddell")
    alice.expect("Your display name is now Alice Liddell.")
    alice.sendline("@bob read this later")
    alice.expect("The message was sent")
    alice.sendline("!quit")
    assert alice.wait_exit() == 0

    bob = terminal(address, name="bob")
    bob.login("bob")
    bob.expect("From alice: read this later")
    back = terminal(address, name="alice-again")
    back.login("alice")
    back.expect("✓ delivered to bob")
    bob.expect("* alice (Alice Liddell) is online")
    back.sendline("!quit")
    assert back.wait_exit() == 0
    bob.expect("* alice (Alice Liddell) is offline")

    third = terminal(address, name="alice-third")
    third.login("alice")
    third.sendline("@echobot marker")
    third.expect("From echobot: marker")
    third.expect("✓ delivered to echobot")  # echobot's reading is a delivery too
    assert third.count("✓ delivered to bob") == 0  # the receipt was acknowledged: not again


def test_password_change_from_the_chat(
    server_process: Any,
    terminal: Factory,
    register_users: Factory,
    cli_env: dict[str, str],
    password: str,
) -> None:
    """`!password` asks the current password and the new one twice without echo; a typo in
    the repeat or a wrong current password changes nothing; success logs out the other
    sessions and the new password works for the next login."""
    address = server_process.address
    register_users(address, "alice")
    env = {**cli_env, "HUBBUB_SERVER": address}

    def hubbub(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [HUBBUB, *args], input=stdin, capture_output=True, text=True, env=env, timeout=30
        )

    assert hubbub("login", "alice", "--password-stdin", stdin=password + "\n").returncode == 0
    alice = terminal(address, name="alice")
    alice.login("alice")

    def change(current: str, new: str, again: str) -> None:
        alice.sendline("!password")
        alice.expect("Current password:")
        alice.sendline(current)
        alice.expect("New password:")
        alice.sendline(new)
        alice.expect("Repeat the new password:")
        alice.sendline(again)

    change(password, "brand-new-secret", "brand-new-typo")
    alice.expect("The passwords do not match.")
    change("not-the-password", "brand-new-secret", "brand-new-secret")
    alice.expect("The current password is wrong.")
    assert hubbub("who").returncode == 0  # nothing changed yet
    change(password, "brand-new-secret", "brand-new-secret")
    alice.expect("Password changed; your other sessions were logged out.")

    refused = hubbub("who")
    assert refused.returncode == 1
    assert refused.stderr == "The server refused the saved login; run 'hubbub login USER' again.\n"
    alice.sendline("@echobot still logged in")
    alice.expect("From echobot: still logged in")
    alice.sendline("!quit")
    assert alice.wait_exit() == 0
    assert "brand-new-secret" not in alice.transcript()
    assert hubbub("login", "alice", "--password-stdin", stdin="brand-new-secret\n").returncode == 0


def test_one_shot_group_commands_from_a_script(
    server_process: Any,
    terminal: Factory,
    register_users: Factory,
    cli_env: dict[str, str],
    tmp_path: Path,
    password: str,
) -> None:
    """A bash script creates a group, sends to it and to a random user, changes its display
    name and password, and reads `groups --json` and `history --json`; bob (interactive)
    receives the messages. Every step exits 0 and prints its one line."""
    address = server_process.address
    register_users(address, "bob", "carol")
    bob = terminal(address, name="bob")
    bob.login("bob")
    script = tmp_path / "groups.sh"
    script.write_text(
        f"""set -euo pipefail
hubbub={HUBBUB}
echo '{password}' | "$hubbub" register alice --password-stdin
echo '{password}' | "$hubbub" login alice --password-stdin
"$hubbub" group create '#team' bob carol
"$hubbub" send '#team' 'hello team'
"$hubbub" send --random 'hello stranger'
"$hubbub" send bob 'just bob'
"$hubbub" groups --json > "{tmp_path}/groups.json"
"$hubbub" history '#team' --json > "{tmp_path}/team.json"
"$hubbub" history @bob -n 5 --json > "{tmp_path}/bob.json"
"$hubbub" profile --display-name 'Alice Liddell'
printf '%s\\n%s\\n' '{password}' 'new-password-42' | \\
    "$hubbub" profile --current-password-stdin --password-stdin
"$hubbub" group leave team
"$hubbub" groups
"""
    )
    env = {**cli_env, "HUBBUB_SERVER": address}
    result = subprocess.run(
        ["bash", str(script)], capture_output=True, text=True, env=env, timeout=90, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        "Registered alice.",
        "Logged in as alice.",
        "Group #team created with alice, bob, carol.",
        "The message was sent",
        "The message was sent to bob",  # bob is the only other user online
        "The message was sent",
        "Your display name is now Alice Liddell.",
        "Password changed; your other sessions were logged out.",
        "You left #team.",
        "You are not in any group.",
    ]
    bob.expect("* alice created #team (alice, bob, carol)")
    bob.expect_re(rf"{HHMM} From alice in #team: hello team{NL}")
    bob.expect_re(rf"{HHMM} From alice: hello stranger{NL}")
    bob.expect_re(rf"{HHMM} From alice: just bob{NL}")
    bob.expect("* alice left #team")

    groups = json.loads((tmp_path / "groups.json").read_text())
    assert [(g["name"], g["members"]) for g in groups] == [("team", ["alice", "bob", "carol"])]
    assert set(groups[0]) == {"name", "members", "create_time"}
    team = json.loads((tmp_path / "team.json").read_text())
    assert [(m["sender"], m["body"], m["group"]) for m in team] == [("alice", "hello team", "team")]
    assert set(team[0]) == {"message_id", "sender", "recipient", "body", "send_time", "group"}
    with_bob = json.loads((tmp_path / "bob.json").read_text())
    assert [m["body"] for m in with_bob] == ["hello stranger", "just bob"]  # oldest first
    assert all("group" not in m for m in with_bob)
