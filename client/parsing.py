"""Parsing what the person types into the chat (interactive client and TUI).

:func:`parse_line` classifies one typed line into a plain record (:data:`ParsedLine`);
:func:`parse_history_target` reads the ``@user`` / ``#group`` of ``!history`` and
``hubbub history``. Pure functions without I/O; the lines about a refused line come
from the wording of :mod:`hubbub.client.render` (docs/cli.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .render import COMMAND_HELP, HISTORY_DEFAULT, HISTORY_MAX, shown

#: Commands that take no arguments (parsed into `Command`).
_PLAIN_COMMANDS = frozenset({"!who", "!groups", "!password", "!help", "!quit"})


@dataclass(frozen=True)
class DirectMessage:
    """`@recipient body`: send `body` (non-empty, not only spaces) to `recipient`."""

    recipient: str
    body: str


@dataclass(frozen=True)
class GroupMessage:
    """`#group body`: send `body` to every other member of `group`."""

    group: str
    body: str


@dataclass(frozen=True)
class Command:
    """A known `!command` without arguments; `name` includes the `!` (e.g. `"!who"`)."""

    name: str


@dataclass(frozen=True)
class CreateGroup:
    """`!create <group> <user>…`: create `group` (no '#') with me and `members`."""

    group: str
    members: tuple[str, ...]


@dataclass(frozen=True)
class AddMembers:
    """`!add <group> <user>…`: add `members` (at least one) to `group`."""

    group: str
    members: tuple[str, ...]


@dataclass(frozen=True)
class LeaveGroup:
    """`!leave <group>`."""

    group: str


@dataclass(frozen=True)
class ShowHistory:
    """`!history @user [n]` / `!history #group [n]`: exactly one of `username`/`group`."""

    username: str = ""
    group: str = ""
    count: int = HISTORY_DEFAULT


@dataclass(frozen=True)
class RandomMessage:
    """`!random <text>`: send `body` to a random online user."""

    body: str


@dataclass(frozen=True)
class SetDisplayName:
    """`!name <display name>`."""

    display_name: str


@dataclass(frozen=True)
class Empty:
    """A blank line: nothing to do."""


@dataclass(frozen=True)
class Invalid:
    """A line the client cannot act on; `message` is the one line to print about it."""

    message: str


ParsedLine = (
    DirectMessage
    | GroupMessage
    | Command
    | CreateGroup
    | AddMembers
    | LeaveGroup
    | ShowHistory
    | RandomMessage
    | SetDisplayName
    | Empty
    | Invalid
)

_DM_RE = re.compile(r"[@#](\S*)(?:\s(.*))?", re.DOTALL)


def parse_line(line: str) -> ParsedLine:
    """Classify one typed line.

    `@user text` → DirectMessage (the body is everything after the first blank
    following the name, kept as typed); `#group text` → GroupMessage; commands
    without arguments (`!who`, `!groups`, `!password`, `!help`, `!quit`) → Command;
    `!create`, `!add`, `!leave`, `!history`, `!random`, `!name` → their own
    dataclasses; a blank line → Empty; anything else → Invalid with the line to print.
    """
    text = line.rstrip("\r\n")
    stripped = text.strip()
    if not stripped:
        return Empty()
    if stripped.startswith("!"):
        return _parse_command(stripped)
    if stripped[0] in "@#":
        sigil = stripped[0]
        m = _DM_RE.fullmatch(text.lstrip())
        assert m is not None  # the pattern matches every string that starts with @ or #
        name, body = m.group(1), m.group(2) or ""
        if not name:
            what = "<username>" if sigil == "@" else "<group>"
            return Invalid(f"Type {sigil}{what} <message> to send a message.")
        if not body.strip():
            return Invalid(f"Type a message after {sigil}{shown(name)} to send it.")
        if sigil == "#":
            return GroupMessage(name, body.lstrip(" "))
        return DirectMessage(name, body.lstrip(" "))
    return Invalid("To send a message type @<username> <message>; !help lists the commands.")


def _usage(name: str) -> Invalid:
    args = COMMAND_HELP[name][0]
    return Invalid(f"Type {name} {args} to {COMMAND_HELP[name][1]}.")


def parse_history_target(target: str) -> tuple[str, str] | None:
    """`@bob` or `bob` → ("bob", ""); `#team` → ("", "team"); None if no name is left."""
    if target.startswith("#"):
        return ("", target[1:]) if target[1:] else None
    name = target.removeprefix("@")
    return (name, "") if name else None


def _parse_command(stripped: str) -> ParsedLine:
    word, *tail = stripped.split(None, 1)
    rest = tail[0].strip() if tail else ""
    name = word.lower()
    args = tuple(rest.split())
    if name in _PLAIN_COMMANDS:
        return Command(name)
    if name == "!create":
        if not args or not args[0].removeprefix("#"):
            return _usage(name)
        return CreateGroup(args[0].removeprefix("#"), tuple(a.removeprefix("@") for a in args[1:]))
    if name == "!add":
        if len(args) < 2 or not args[0].removeprefix("#"):
            return _usage(name)
        return AddMembers(args[0].removeprefix("#"), tuple(a.removeprefix("@") for a in args[1:]))
    if name == "!leave":
        if len(args) != 1 or not args[0].removeprefix("#"):
            return _usage(name)
        return LeaveGroup(args[0].removeprefix("#"))
    if name == "!history":
        target = parse_history_target(args[0]) if args else None
        if target is None or len(args) > 2:
            return _usage(name)
        count = HISTORY_DEFAULT
        if len(args) == 2:
            if not args[1].isdigit() or not 1 <= int(args[1]) <= HISTORY_MAX:
                return Invalid(f"The number of messages must be 1 to {HISTORY_MAX}.")
            count = int(args[1])
        return ShowHistory(target[0], target[1], count)
    if name == "!random":
        return RandomMessage(rest) if rest else _usage(name)
    if name == "!name":
        return SetDisplayName(rest) if rest else _usage(name)
    return Invalid(f"Unknown command {shown(word)}. Type !help for the list.")
