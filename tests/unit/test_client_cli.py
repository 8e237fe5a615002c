"""Unit tests of the CLI surface without a network: argument parsing, JSON shapes, completion."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from hubbub.client import IncomingMessage, UserInfo
from hubbub.client.arguments import build_parser
from hubbub.client.cli import main
from hubbub.client.json_output import message_json, user_json
from hubbub.client.line_input import ChatCompleter

COMMANDS = ["chat", "register", "login", "logout", "who", "send", "listen"]


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)])
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """`hubbub [COMMAND] --help` prints a usage text and exits 0."""
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([*command, "--help"])
    assert info.value.code == 0
    assert "usage: hubbub" in capsys.readouterr().out


def test_usage_error_is_one_line_with_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A missing argument prints one line on stderr and exits 2."""
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["send", "bob"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("hubbub send: ")


def test_server_flag_works_before_and_after_the_command() -> None:
    """`--server` is accepted globally and on the subcommand."""
    parser = build_parser()
    assert parser.parse_args(["--server", "h:1", "who"]).server == "h:1"
    assert parser.parse_args(["who", "--server", "h:2"]).server == "h:2"
    assert parser.parse_args(["who"]).server is None


def test_commands_needing_a_login_fail_cleanly_without_one(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`hubbub who` with no saved login exits 1 with one line saying what to do."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert main(["who"]) == 1
    err = capsys.readouterr().err
    assert err == "Not logged in; run 'hubbub login USER' first.\n"


def test_message_json_shape() -> None:
    """`listen --json` objects carry exactly the documented keys, time in ISO 8601."""
    msg = IncomingMessage(3, 42, "alice", "Alice", "bob", "hé", datetime(2026, 1, 2, tzinfo=UTC))
    assert message_json(msg) == {
        "sequence": 3,
        "message_id": 42,
        "sender": "alice",
        "recipient": "bob",
        "body": "hé",
        "send_time": "2026-01-02T00:00:00+00:00",
    }


def test_user_json_shape() -> None:
    """`who --json` objects carry name, display name, presence and bot flag."""
    assert user_json(UserInfo("echobot", "Echo", True, True, None)) == {
        "username": "echobot",
        "display_name": "Echo",
        "online": True,
        "bot": True,
        "presence_change_time": None,
    }


def _complete(text: str, names: list[str]) -> list[str]:
    completer = ChatCompleter(lambda: names)
    return [c.text for c in completer.get_completions(Document(text), CompleteEvent())]


def test_completes_names_after_at_sign() -> None:
    """`@al` completes to the known names starting with "al" (case-insensitive)."""
    assert _complete("@al", ["alice", "Alfred", "bob"]) == ["@Alfred ", "@alice "]


def test_completes_commands() -> None:
    """`!w` completes to `!who`; `!` offers every command, the group ones included."""
    assert _complete("!w", []) == ["!who"]
    assert set(_complete("!", [])) == {
        "!who",
        "!groups",
        "!create",
        "!add",
        "!leave",
        "!history",
        "!random",
        "!name",
        "!password",
        "!help",
        "!quit",
    }


def test_no_completion_inside_the_message_text() -> None:
    """Words after the recipient are free text: nothing is offered."""
    assert _complete("@bob hello @al", ["alice"]) == []
