"""Unit tests of the CLI side of groups, history, receipts, display names, passwords and
random recipients: command parsing, the printed wording, and the one-shot argument parsing
and JSON shapes. No network."""

from __future__ import annotations

import argparse
import io
from datetime import UTC, datetime, timedelta, timezone

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from hubbub.client import (
    ErrorKind,
    EventRejected,
    FieldViolation,
    GroupInfo,
    IncomingMessage,
    render,
)
from hubbub.client.arguments import build_parser
from hubbub.client.cli import main
from hubbub.client.failures import Failure
from hubbub.client.interactive import rejection_line
from hubbub.client.json_output import group_json, history_json
from hubbub.client.line_input import ChatCompleter
from hubbub.client.parsing import (
    AddMembers,
    Command,
    CreateGroup,
    Invalid,
    LeaveGroup,
    RandomMessage,
    SetDisplayName,
    ShowHistory,
    parse_line,
)
from hubbub.client.password_input import read_profile_passwords

T0 = datetime(2026, 3, 1, 20, 0, tzinfo=UTC)
IST = timezone(timedelta(hours=5, minutes=30))

# --- parsing typed commands ----------------------------------------------------------------


def test_group_commands_are_parsed() -> None:
    """`!create`, `!add` and `!leave` take a group (leading # optional) and user names
    (leading @ optional)."""
    assert parse_line("!create team bob @carol") == CreateGroup("team", ("bob", "carol"))
    assert parse_line("!create #team") == CreateGroup("team", ())
    assert parse_line("!add #team  dave   erin ") == AddMembers("team", ("dave", "erin"))
    assert parse_line("!leave #team") == LeaveGroup("team")
    assert parse_line("!LEAVE team") == LeaveGroup("team")


@pytest.mark.parametrize(
    ("line", "usage"),
    [
        ("!create", "Type !create <group> <user>… to create a group with you and these users."),
        ("!create #", "Type !create <group> <user>… to create a group with you and these users."),
        ("!add team", "Type !add <group> <user>… to add users to a group you belong to."),
        ("!leave", "Type !leave <group> to leave a group."),
        ("!leave a b", "Type !leave <group> to leave a group."),
        ("!random", "Type !random <message> to send a message to a random online user."),
        (
            "!name   ",
            "Type !name <display name> to change the name shown next to your username.",
        ),
        (
            "!history",
            "Type !history @<user>|#<group> [n] to show the last n messages (default 20).",
        ),
    ],
)
def test_commands_missing_arguments_print_their_usage(line: str, usage: str) -> None:
    """A command without its arguments is one line showing how to type it."""
    assert parse_line(line) == Invalid(usage)


def test_history_command_targets_and_counts() -> None:
    """`!history @bob`, `!history bob`, `!history #team 5`: default 20, count 1-10000."""
    assert parse_line("!history @bob") == ShowHistory(username="bob", count=20)
    assert parse_line("!history bob 3") == ShowHistory(username="bob", count=3)
    assert parse_line("!history #team 5") == ShowHistory(group="team", count=5)
    for bad in ("!history #team 0", "!history #team x", "!history @bob 10001"):
        assert parse_line(bad) == Invalid("The number of messages must be 1 to 10000.")
    assert isinstance(parse_line("!history #"), Invalid)
    assert isinstance(parse_line("!history @bob 5 6"), Invalid)


def test_random_and_name_keep_their_text() -> None:
    """`!random` and `!name` keep the rest of the line (inner blanks included)."""
    assert parse_line("!random hi  there") == RandomMessage("hi  there")
    assert parse_line("!name Alice  Liddell ") == SetDisplayName("Alice  Liddell")
    assert parse_line("!name\tBob") == SetDisplayName("Bob")


@pytest.mark.parametrize("line", ["!groups", "!password", " !Groups "])
def test_commands_without_arguments(line: str) -> None:
    """`!groups` and `!password` are plain commands."""
    assert parse_line(line) == Command(line.strip().lower())


def test_help_lists_the_new_commands_with_their_arguments() -> None:
    """!help shows every command with its arguments."""
    text = "\n".join(render.help_lines())
    for usage in (
        "!create <group> <user>…",
        "!add <group> <user>…",
        "!leave <group>",
        "!groups",
        "!history @<user>|#<group> [n]",
        "!random <message>",
        "!name <display name>",
        "!password",
    ):
        assert usage in text


# --- wording -------------------------------------------------------------------------------


def test_group_answer_lines() -> None:
    """The answers to !create, !add, !leave and !groups."""
    assert render.group_created("team", ["alice", "bob", "carol"]) == (
        "Group #team created with alice, bob, carol."
    )
    assert render.members_added("team", ["bob"]) == "Added bob to #team."
    assert render.members_added("team", ["bob", "carol"]) == "Added bob, carol to #team."
    assert render.group_left("team") == "You left #team."
    assert render.groups_header(2) == "You are in 2 groups:"
    assert render.groups_header(1) == "You are in 1 group:"
    assert render.groups_header(0) == "You are not in any group."
    assert render.group_listing("team", ["alice", "bob"]) == "#team: alice, bob"


def test_group_refusal_lines_by_server_reason() -> None:
    """Taken name, not a member and unknown group get the client's own lines; an unknown
    user gets the server's sentence (it names the user); a bad name names the rule."""
    line = render.group_error_line
    assert line("GROUP_NAME_TAKEN", "already_exists", "#team", "x") == (
        "The group name #team is already taken."
    )
    assert line("NOT_A_MEMBER", "permission_denied", "team", "x") == (
        "You are not a member of #team."
    )
    assert line("GROUP_NOT_FOUND", "not_found", "nope", "x") == "The group #nope does not exist."
    assert line("USER_NOT_FOUND", "not_found", "team", "The user 'ghost' does not exist.") == (
        "The user 'ghost' does not exist."
    )
    assert line("INVALID_ARGUMENT", "invalid_argument", "a!", "only letters") == (
        "Cannot use #a! as a group name: only letters"
    )


def test_group_refusal_lines_without_a_reason_fall_back_on_the_kind() -> None:
    """Without an ErrorInfo reason the status kind decides; NOT_FOUND alone cannot tell a
    group from a user, so the server's sentence is shown as it is (never parsed)."""
    line = render.group_error_line
    assert line("", "already_exists", "team", "x") == "The group name #team is already taken."
    assert line("", "permission_denied", "team", "x") == "You are not a member of #team."
    assert line("", "not_found", "t", "The group 't' does not exist.") == (
        "The group 't' does not exist."
    )
    assert line("", "not_found", "t", "The user 'z' does not exist.") == (
        "The user 'z' does not exist."
    )


def test_a_missing_user_named_like_a_group_is_not_reported_as_a_missing_group() -> None:
    """The decision comes from the reason/kind, not the message text: a user 'groupie'
    that does not exist is not "The group #team does not exist"."""
    line = render.group_error_line
    missing = "The user 'groupie' does not exist."
    assert line("", "not_found", "team", missing) == missing
    assert line("USER_NOT_FOUND", "not_found", "team", missing) == missing


def _rejected(reason: str, kind: ErrorKind, fields: tuple[str, ...] = ()) -> EventRejected:
    return EventRejected(1, "c", kind, reason, "m", tuple(FieldViolation(f, "") for f in fields))


def test_refused_sends_to_groups_and_random_users() -> None:
    """A refused group send names the group; a refused random send says nobody is online;
    direct messages keep the fixed lines of docs/cli.md §Wording."""
    assert rejection_line(_rejected("NOT_A_MEMBER", ErrorKind.PERMISSION_DENIED), group="team") == (
        "You are not a member of #team."
    )
    assert rejection_line(_rejected("GROUP_NOT_FOUND", ErrorKind.NOT_FOUND), group="nope") == (
        "The group #nope does not exist."
    )
    assert (
        rejection_line(_rejected("", ErrorKind.NOT_FOUND), group="nope")
        == "The group #nope does not exist."
    )
    assert (
        rejection_line(_rejected("NOBODY_ONLINE", ErrorKind.FAILED_PRECONDITION))
        == "Nobody else is online."
    )
    assert (
        rejection_line(_rejected("USER_NOT_FOUND", ErrorKind.NOT_FOUND))
        == "The destination user does not exist"
    )
    assert rejection_line(
        _rejected("MESSAGE_INVALID", ErrorKind.INVALID_ARGUMENT, ("send.body",)), group="team"
    ) == ("Error: Unknown issue in previous message body.")


def test_history_lines() -> None:
    """History headers name the conversation; each line is `[YYYY-MM-DD HH:MM] who: text`
    in the given zone (the date too), with control characters neutralised."""
    assert render.history_header(username="bob") == "History with bob (newest last):"
    assert render.history_header(group="team") == "History of #team (newest last):"
    assert render.history_line("alice", "hi", T0, UTC) == "[2026-03-01 20:00] alice: hi"
    assert render.history_line("alice", "hi", T0, IST) == "[2026-03-02 01:30] alice: hi"
    assert render.history_line("alice", "a\x1b[2Jb", T0, UTC).endswith("alice: a^[[2Jb")
    assert render.NO_MESSAGES == "No messages yet."


def test_receipt_random_profile_lines() -> None:
    """Receipts, random sends, display names and password changes have fixed lines."""
    assert render.delivered_line("bob") == "✓ delivered to bob"
    assert render.message_sent_to("bob") == "The message was sent to bob"
    assert render.NOBODY_ONLINE == "Nobody else is online."
    assert render.display_name_changed("Alice Liddell") == (
        "Your display name is now Alice Liddell."
    )
    assert render.PASSWORD_CHANGED == "Password changed; your other sessions were logged out."


@pytest.mark.parametrize(
    ("username", "display_name", "label"),
    [
        ("alice", "Alice Liddell", "alice (Alice Liddell)"),
        ("alice", "Alice", "alice"),
        ("alice", "ALICE", "alice"),
        ("alice", "", "alice"),
        ("alice", "  ", "alice"),
        ("alice", "Evil\x1b[31m", "alice (Evil^[[31m)"),
    ],
)
def test_user_label_shows_a_differing_display_name(
    username: str, display_name: str, label: str
) -> None:
    """A display name is shown in parentheses only when it differs from the username
    other than by case."""
    assert render.user_label(username, display_name) == label


def test_presence_lines_with_display_names() -> None:
    """Presence lines carry a differing display name; the plain form is unchanged."""
    assert render.presence_line("alice", True, "Alice Liddell") == (
        "* alice (Alice Liddell) is online"
    )
    assert render.presence_line("bob", False, "Bob") == "* bob is offline"


def test_canonical_members_follow_the_group_spelling() -> None:
    """Names typed in any case are shown as the group lists them, once each."""
    assert render.canonical_members(["Bob", "carol", "BOB", "zed"], ["alice", "bob", "carol"]) == [
        "bob",
        "carol",
        "zed",
    ]


def test_completes_group_names_after_hash() -> None:
    """`#te` completes to the known groups starting with "te"."""
    completer = ChatCompleter(lambda: ["bob"], lambda: ["team", "tech", "other"])
    got = [c.text for c in completer.get_completions(Document("#te"), CompleteEvent())]
    assert got == ["#team ", "#tech "]


# --- one-shot commands ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["groups"],
        ["group"],
        ["group", "create"],
        ["group", "add"],
        ["group", "leave"],
        ["history"],
        ["profile"],
        ["send"],
    ],
)
def test_new_commands_have_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """`hubbub groups|group [create|add|leave]|history|profile --help` exit 0 with usage."""
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([*command, "--help"])
    assert info.value.code == 0
    assert "usage: hubbub" in capsys.readouterr().out


def test_profile_help_explains_the_password_input(capsys: pytest.CaptureFixture[str]) -> None:
    """`hubbub profile --help` documents which stdin line holds which password."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["profile", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--current-password-stdin" in text
    assert "line 1 is" in text and "line 2 the new one" in text


def test_send_parses_users_groups_and_random() -> None:
    """`send USER TEXT…`, `send '#team' TEXT…` and `send --random TEXT…` (no USER)."""
    parser = build_parser()
    args = parser.parse_args(["send", "bob", "hi", "there"])
    assert (args.recipient, args.text, args.random) == ("bob", ["hi", "there"], False)
    args = parser.parse_args(["send", "#team", "hi"])
    assert (args.recipient, args.text) == ("#team", ["hi"])
    args = parser.parse_args(["send", "--random", "hello", "world"])
    assert (args.recipient, args.text, args.random) == ("", ["hello", "world"], True)


@pytest.mark.parametrize(
    "argv",
    [
        ["send", "bob"],
        ["send", "--random"],
        ["group"],
        ["group", "add", "team"],
        ["group", "leave"],
        ["history"],
        ["profile", "--password", "--password-stdin"],
    ],
)
def test_new_usage_errors_are_one_line_with_status_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Missing or conflicting arguments print one line on stderr and exit 2."""
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("hubbub ")


def test_group_and_history_arguments() -> None:
    """`group create NAME USER…`, `history #team -n 5 --json` parse as documented."""
    parser = build_parser()
    args = parser.parse_args(["group", "create", "#team", "bob", "carol"])
    assert (args.command, args.group_command, args.name, args.members) == (
        "group",
        "create",
        "#team",
        ["bob", "carol"],
    )
    args = parser.parse_args(["history", "#team", "-n", "5", "--json"])
    assert (args.target, args.count, args.json) == ("#team", 5, True)
    assert parser.parse_args(["history", "@bob"]).count == 20
    assert parser.parse_args(["groups", "--json"]).json is True


def test_group_json_shape() -> None:
    """`groups --json` objects carry name, members and create_time (ISO 8601, UTC)."""
    assert group_json(GroupInfo("team", ("alice", "bob"), T0)) == {
        "name": "team",
        "members": ["alice", "bob"],
        "create_time": "2026-03-01T20:00:00+00:00",
    }
    assert group_json(GroupInfo("x", ()))["create_time"] is None


def test_history_json_shape() -> None:
    """`history --json` objects: message_id, sender, recipient, body, send_time, and group
    for a group message only (no inbox sequence: history is not an inbox)."""
    dm = IncomingMessage(0, 7, "alice", "Alice", "bob", "hi", T0)
    assert history_json(dm) == {
        "message_id": 7,
        "sender": "alice",
        "recipient": "bob",
        "body": "hi",
        "send_time": "2026-03-01T20:00:00+00:00",
    }
    in_group = IncomingMessage(0, 8, "alice", "", "", "yo", T0, group="team")
    assert history_json(in_group)["group"] == "team"


def _profile_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["profile", *argv])


def test_profile_passwords_from_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    """With both stdin flags, line 1 is the current password and line 2 the new one."""
    monkeypatch.setattr("sys.stdin", io.StringIO("old-secret\nnew-secret-1\n"))
    args = _profile_args("--current-password-stdin", "--password-stdin")
    assert read_profile_passwords(args) == ("old-secret", "new-secret-1")


def test_profile_password_input_problems_are_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing line, --current-password-stdin alone, or no terminal for the current
    password each fail with one sentence saying what to do."""
    monkeypatch.setattr("sys.stdin", io.StringIO("only-one-line\n"))
    with pytest.raises(Failure, match="No new password on stdin"):
        read_profile_passwords(_profile_args("--current-password-stdin", "--password-stdin"))
    with pytest.raises(Failure, match="needs --password-stdin"):
        read_profile_passwords(_profile_args("--current-password-stdin"))
    monkeypatch.setattr("sys.stdin", io.StringIO("new-secret-1\n"))
    monkeypatch.setattr("hubbub.client.password_input._terminal_available", lambda: False)
    with pytest.raises(Failure, match="use --current-password-stdin"):
        read_profile_passwords(_profile_args("--password-stdin"))
    assert read_profile_passwords(_profile_args("--display-name", "X")) == ("", "")


def test_profile_with_nothing_to_change_fails(capsys: pytest.CaptureFixture[str]) -> None:
    """`hubbub profile` alone exits 1 with one line naming the options."""
    assert main(["profile"]) == 1
    assert capsys.readouterr().err == (
        "Nothing to change: give --display-name, --password or --password-stdin.\n"
    )
