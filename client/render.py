"""Pure text logic of the CLI: parsing typed lines and formatting the lines it prints.

Nothing here touches the network, the terminal or the clock (times are passed in),
so every function is unit-tested directly. The exact wording of the lines that
SPEC.md section 4 fixes lives here and nowhere else.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

# --- the fixed wording of SPEC.md section 4 ---------------------------------------------

WELCOME = "Welcome to Chat Client. Enter your login:"
ENTER_LOGIN = "Enter your login:"
MESSAGE_SENT = "The message was sent"
USER_NOT_FOUND = "The destination user does not exist"
SERVER_FULL = "Cannot log in. The server is full!"
HEADER_ERROR = "Error: Unknown issue in previous message header."
BODY_ERROR = "Error: Unknown issue in previous message body."
CONNECTION_LOST = "* Connection lost; reconnecting…"
RECONNECTED = "* Reconnected"

#: Commands the interactive client understands, with their one-line help.
COMMANDS: dict[str, str] = {
    "!who": "list the users who are online now",
    "!help": "show this help",
    "!quit": "leave the chat (Ctrl-D does the same)",
}

_USERNAME_RE = re.compile(r"[\w.-]{3,32}")


def logged_in(username: str) -> str:
    """The line printed after a successful login."""
    return f"Successfully logged in as {username}!"


def name_in_use(username: str) -> str:
    """The line printed when a name is taken or already online."""
    return f"Cannot log in as {username}. That username is already in use."


def name_disallowed(username: str) -> str:
    """The line printed when a name has characters outside letters, digits, `_ . -`."""
    return f"Cannot log in as {sanitize(username)}. That username contains disallowed characters."


def who_header(count: int) -> str:
    """The first line of the `!who` answer; `count` is the number of names that follow."""
    return f"There are {count} online users:"


def presence_line(username: str, online: bool) -> str:
    """The line printed when another user comes online or goes offline."""
    return f"* {sanitize(username)} is {'online' if online else 'offline'}"


def incoming_line(
    sender: str, body: str, send_time: datetime, tz: tzinfo | None = None, group: str = ""
) -> str:
    """`[HH:MM] From <sender>: <body>` with HH:MM in `tz` (default: the local time zone).

    A group message reads `[HH:MM] From <sender> in #<group>: <body>`. `send_time`
    must be timezone-aware (the server's timestamp, UTC); control characters in
    `sender` and `body` are made visible instead of reaching the terminal.
    """
    local = send_time.astimezone(tz)
    where = f" in #{sanitize(group)}" if group else ""
    return f"[{local:%H:%M}] From {sanitize(sender)}{where}: {sanitize(body)}"


def group_update_line(group: str, action: str, actor: str, members: Sequence[str]) -> str:
    """`* alice created #team (alice, bob)`-style line for a group membership change.

    `action` is "created", "added" or "left" (anything else reads "changed").
    """
    names = ", ".join(sanitize(m) for m in members)
    g, who = sanitize(group), sanitize(actor)
    if action == "created":
        return f"* {who} created #{g} ({names})"
    if action == "added":
        return f"* {who} added {names} to #{g}"
    if action == "left":
        return f"* {names} left #{g}"
    return f"* #{g} was changed by {who}"


def help_lines() -> list[str]:
    """The lines `!help` prints."""
    lines = [
        "Commands:",
        "  @<username> <message>  send a direct message",
        "  #<group> <message>     send a message to a group you belong to",
    ]
    lines += [f"  {name:<22} {text}" for name, text in COMMANDS.items()]
    return lines


def valid_username(name: str) -> bool:
    """True if `name` is 3-32 letters, digits, `_`, `.` or `-` (the local pre-check)."""
    return _USERNAME_RE.fullmatch(name) is not None


def sanitize(text: str) -> str:
    """Return `text` with control characters (except newline and tab) in caret/escape form.

    Keeps terminal escape sequences in message bodies from moving the cursor or
    changing colours: ESC becomes `^[`, other C0 controls `^X`, DEL and C1 `\\x..`.
    Zero-width format characters are shown as `<U+XXXX>`.
    """
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if ch in "\n\t":
            out.append(ch)
        elif code < 0x20:
            out.append("^" + chr(code + 0x40))
        elif code == 0x7F or 0x80 <= code < 0xA0:
            out.append(f"\\x{code:02x}")
        elif unicodedata.category(ch) == "Cf":
            out.append(f"<U+{code:04X}>")
        else:
            out.append(ch)
    return "".join(out)


# --- parsing what the person types -------------------------------------------------------


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
    """A known `!command`; `name` includes the `!` (e.g. `"!who"`)."""

    name: str


@dataclass(frozen=True)
class Empty:
    """A blank line: nothing to do."""


@dataclass(frozen=True)
class Invalid:
    """A line the client cannot act on; `message` is the one line to print about it."""

    message: str


ParsedLine = DirectMessage | GroupMessage | Command | Empty | Invalid

_DM_RE = re.compile(r"[@#](\S*)(?:\s(.*))?", re.DOTALL)


def parse_line(line: str) -> ParsedLine:
    """Classify one typed line.

    `@user text` → DirectMessage (the body is everything after the first blank
    following the name, kept as typed); `#group text` → GroupMessage;
    `!who`/`!help`/`!quit` → Command; a blank line → Empty; anything else →
    Invalid with the line to print.
    """
    text = line.rstrip("\r\n")
    stripped = text.strip()
    if not stripped:
        return Empty()
    if stripped.startswith("!"):
        name = stripped.split()[0].lower()
        if name in COMMANDS:
            return Command(name)
        return Invalid(f"Unknown command {sanitize(stripped.split()[0])}. Type !help for the list.")
    if stripped[0] in "@#":
        sigil = stripped[0]
        m = _DM_RE.fullmatch(text.lstrip())
        assert m is not None  # the pattern matches every string that starts with @ or #
        name, body = m.group(1), m.group(2) or ""
        if not name:
            what = "<username>" if sigil == "@" else "<group>"
            return Invalid(f"Type {sigil}{what} <message> to send a message.")
        if not body.strip():
            return Invalid(f"Type a message after {sigil}{sanitize(name)} to send it.")
        if sigil == "#":
            return GroupMessage(name, body.lstrip(" "))
        return DirectMessage(name, body.lstrip(" "))
    return Invalid("To send a message type @<username> <message>; !help lists the commands.")


# --- reconnect backoff --------------------------------------------------------------------


@dataclass
class Backoff:
    """Exponential backoff with jitter for reconnect attempts.

    Attempt n (0-based) waits between half and all of `min(cap, base * factor**n)`
    seconds ("equal jitter"), so delays grow quickly but never exceed `cap` and
    clients that lost the same server do not all come back at the same instant.
    """

    base: float = 0.25
    factor: float = 2.0
    cap: float = 4.0
    attempt: int = 0
    rng: random.Random | None = None

    def ceiling(self, attempt: int) -> float:
        """The largest delay (seconds) attempt number `attempt` may wait."""
        return min(self.cap, self.base * self.factor ** min(attempt, 64))

    def next_delay(self) -> float:
        """Return the delay (seconds) before the next attempt and count the attempt."""
        top = self.ceiling(self.attempt)
        self.attempt += 1
        rng = self.rng or random
        return top / 2 + rng.uniform(0, top / 2)

    def reset(self) -> None:
        """Start again from the shortest delay (call after a successful connect)."""
        self.attempt = 0
