"""Unit tests of the CLI's pure text logic: line parsing, the fixed wording, backoff."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from hubbub.client import parsing, render
from hubbub.client.backoff import Backoff
from hubbub.client.parsing import Command, DirectMessage, Empty, Invalid, parse_line


def test_dm_is_parsed_into_recipient_and_body() -> None:
    """`@bob hello there` sends "hello there" to bob."""
    assert parse_line("@bob hello there") == DirectMessage("bob", "hello there")


def test_dm_body_keeps_inner_and_trailing_text_as_typed() -> None:
    """Only the blanks between the name and the text are dropped; the body is kept as typed."""
    assert parse_line("@bob   a  b  ") == DirectMessage("bob", "a  b  ")
    assert parse_line("@bob\tx") == DirectMessage("bob", "x")


def test_dm_without_text_is_refused_with_one_line() -> None:
    """`@bob` or `@bob   ` has no message: an Invalid line naming the fix, never a send."""
    for line in ("@bob", "@bob   "):
        parsed = parse_line(line)
        assert isinstance(parsed, Invalid)
        assert "@bob" in parsed.message
        assert "\n" not in parsed.message


def test_at_sign_alone_is_refused() -> None:
    """A bare `@` (or `@ text`) names nobody: Invalid."""
    assert isinstance(parse_line("@"), Invalid)
    assert isinstance(parse_line("@ hello"), Invalid)


@pytest.mark.parametrize("line", ["!who", "!help", "!quit", "  !who  ", "!WHO"])
def test_known_commands(line: str) -> None:
    """The three commands are recognised whatever the surrounding blanks or case."""
    parsed = parse_line(line)
    assert isinstance(parsed, Command)
    assert parsed.name == line.strip().lower()


def test_unknown_command_is_one_clear_line() -> None:
    """`!frobnicate` is reported as an unknown command that points to !help."""
    parsed = parse_line("!frobnicate now")
    assert isinstance(parsed, Invalid)
    assert parsed.message == "Unknown command !frobnicate. Type !help for the list."


def test_plain_text_is_refused_with_a_hint() -> None:
    """A line that starts with neither @ nor ! explains how to send a message."""
    parsed = parse_line("hello everyone")
    assert isinstance(parsed, Invalid)
    assert "@<username> <message>" in parsed.message


def test_blank_line_does_nothing() -> None:
    """An empty or all-blank line is Empty (the prompt just comes back)."""
    assert parse_line("") == Empty()
    assert parse_line("   \n") == Empty()


def test_fixed_wording_of_spec_section_4() -> None:
    """The lines docs/cli.md §Wording fixes are spelled exactly."""
    assert render.WELCOME == "Welcome to Chat Client. Enter your login:"
    assert render.logged_in("alice") == "Successfully logged in as alice!"
    assert render.name_in_use("alice") == (
        "Cannot log in as alice. That username is already in use."
    )
    assert render.name_disallowed("al!ce") == (
        "Cannot log in as al!ce. That username contains disallowed characters."
    )
    assert render.SERVER_FULL == "Cannot log in. The server is full!"
    assert render.MESSAGE_SENT == "The message was sent"
    assert render.USER_NOT_FOUND == "The destination user does not exist"
    assert render.who_header(3) == "There are 3 online users:"
    assert render.HEADER_ERROR == "Error: Unknown issue in previous message header."
    assert render.BODY_ERROR == "Error: Unknown issue in previous message body."


def test_incoming_line_uses_the_given_time_zone() -> None:
    """`[HH:MM] From <sender>: <body>` shows the server's UTC time in the local zone."""
    sent = datetime(2026, 3, 1, 23, 45, 10, tzinfo=UTC)
    plus_5_30 = timezone(timedelta(hours=5, minutes=30))
    assert render.incoming_line("alice", "hi", sent, plus_5_30) == "[05:15] From alice: hi"
    assert render.incoming_line("alice", "hi", sent, UTC) == "[23:45] From alice: hi"


def test_incoming_line_defaults_to_the_process_local_zone() -> None:
    """Without an explicit zone the line uses the process's local time."""
    sent = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    expected = sent.astimezone().strftime("%H:%M")
    assert render.incoming_line("bob", "x", sent) == f"[{expected}] From bob: x"


def test_incoming_line_neutralises_terminal_escapes() -> None:
    """An ESC in a body cannot reach the terminal; it is shown as ^[."""
    sent = datetime(2026, 1, 1, tzinfo=UTC)
    line = render.incoming_line("eve", "\x1b[2Jboom\x07", sent, UTC)
    assert "\x1b" not in line and "\x07" not in line
    assert line.endswith("From eve: ^[[2Jboom^G")


def test_sanitize_keeps_newlines_tabs_and_letters() -> None:
    """Printable text, newlines, tabs and non-ASCII letters pass through unchanged."""
    assert render.sanitize("héllo\twörld\n日本") == "héllo\twörld\n日本"
    assert render.sanitize("a\u200bb") == "a<U+200B>b"
    assert render.sanitize("x\x7fy\x85") == "x\\x7fy\\x85"


@pytest.mark.parametrize(
    "name",
    ["bob", "alice_1", "a.b-c", "Łukasz", "x" * 32, "日本語"],
)
def test_valid_usernames(name: str) -> None:
    """3-32 letters, digits, `_`, `.` or `-` pass the local check."""
    assert render.valid_username(name)


@pytest.mark.parametrize(
    "name",
    [
        "ab",
        "x" * 33,
        "al ice",
        "ali\u200bce",
        "bob!",
        "b@b",
        "#bob",
        "b$b",
        "b%b",
        "b^b",
        "b&b",
        "b*b",
        "bo/b",
        "",
    ],
)
def test_disallowed_usernames(name: str) -> None:
    """Spaces, zero-width and punctuation such as !@#$%^&*, and bad lengths fail the check."""
    assert not render.valid_username(name)


def test_presence_lines() -> None:
    """Presence changes print as `* name is online` / `* name is offline`."""
    assert render.presence_line("alice", True) == "* alice is online"
    assert render.presence_line("alice", False) == "* alice is offline"


def test_help_lists_every_command() -> None:
    """!help mentions direct messages and each command."""
    text = "\n".join(render.help_lines())
    for name in ("@<username>", "!who", "!help", "!quit"):
        assert name in text


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    """Each delay lies in [ceiling/2, ceiling], ceilings double and stop at the cap."""
    backoff = Backoff(base=0.25, factor=2.0, cap=4.0, rng=random.Random(7))
    ceilings = [0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    for ceiling in ceilings:
        delay = backoff.next_delay()
        assert ceiling / 2 <= delay <= ceiling
    assert backoff.ceiling(1000) == 4.0


def test_backoff_has_jitter() -> None:
    """Two clients with different random sources do not wait the same time."""
    a = Backoff(rng=random.Random(1))
    b = Backoff(rng=random.Random(2))
    assert [a.next_delay() for _ in range(5)] != [b.next_delay() for _ in range(5)]


def test_backoff_reset_starts_again_from_the_base() -> None:
    """After a successful connect the next delay is short again."""
    backoff = Backoff(base=0.25, cap=4.0, rng=random.Random(3))
    for _ in range(10):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() <= 0.25


def test_group_message_is_parsed() -> None:
    """`#team hi all` sends "hi all" to the group team; `#team` alone is refused."""
    assert parse_line("#team hi all") == parsing.GroupMessage("team", "hi all")
    parsed = parse_line("#team")
    assert isinstance(parsed, Invalid) and "#team" in parsed.message


def test_group_incoming_line_names_the_group() -> None:
    """A group message reads `[HH:MM] From <sender> in #<group>: <body>`."""
    sent = datetime(2026, 3, 1, 10, 5, tzinfo=UTC)
    line = render.incoming_line("alice", "hi", sent, UTC, group="team")
    assert line == "[10:05] From alice in #team: hi"


def test_group_update_lines() -> None:
    """Group membership changes print one `*` line each."""
    assert render.group_update_line("team", "created", "alice", ["alice", "bob"]) == (
        "* alice created #team (alice, bob)"
    )
    assert render.group_update_line("team", "added", "alice", ["carol"]) == (
        "* alice added carol to #team"
    )
    assert render.group_update_line("team", "left", "bob", ["bob"]) == "* bob left #team"


def test_render_does_not_re_export_backoff() -> None:
    """Backoff lives in the library (hubbub.client.backoff), not in the CLI's text module."""
    assert not hasattr(render, "Backoff")
