"""Pure text logic of the CLI: the lines it prints and safe display of network text.

Nothing here touches the network, the terminal or the clock (times are passed in),
so every function is unit-tested directly. The exact wording of the lines that
docs/cli.md §Wording fixes lives here and nowhere else; parsing what the person
types is :mod:`hubbub.client.parsing`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime, tzinfo

# --- the fixed wording of docs/cli.md §Wording -----------------------------------------

WELCOME = "Welcome to Chat Client. Enter your login:"
ENTER_LOGIN = "Enter your login:"
MESSAGE_SENT = "The message was sent"
USER_NOT_FOUND = "The destination user does not exist"
SERVER_FULL = "Cannot log in. The server is full!"
HEADER_ERROR = "Error: Unknown issue in previous message header."
BODY_ERROR = "Error: Unknown issue in previous message body."
CONNECTION_LOST = "* Connection lost; reconnecting…"
RECONNECTED = "* Reconnected"

# --- the wording of groups, history, receipts, profiles and random sends ------------------

NO_MESSAGES = "No messages yet."
NOBODY_ONLINE = "Nobody else is online."
PASSWORD_CHANGED = "Password changed; your other sessions were logged out."
PASSWORDS_DIFFER = "The passwords do not match."
SERVER_UNREACHABLE = "* The server cannot be reached right now; try again in a moment."

#: Default number of messages `!history` / `hubbub history` shows.
HISTORY_DEFAULT = 20
#: Most messages one `!history` / `hubbub history` shows.
HISTORY_MAX = 10_000

#: Commands the interactive client understands: name → (arguments, one-line help).
COMMAND_HELP: dict[str, tuple[str, str]] = {
    "!who": ("", "list the users who are online now"),
    "!groups": ("", "list your groups and their members"),
    "!create": ("<group> <user>…", "create a group with you and these users"),
    "!add": ("<group> <user>…", "add users to a group you belong to"),
    "!leave": ("<group>", "leave a group"),
    "!history": (
        "@<user>|#<group> [n]",
        f"show the last n messages (default {HISTORY_DEFAULT})",
    ),
    "!random": ("<message>", "send a message to a random online user"),
    "!name": ("<display name>", "change the name shown next to your username"),
    "!password": ("", "change your password (logs out your other sessions)"),
    "!help": ("", "show this help"),
    "!quit": ("", "leave the chat (Ctrl-D does the same)"),
}

#: Commands the interactive client understands, with their one-line help.
COMMANDS: dict[str, str] = {name: text for name, (_, text) in COMMAND_HELP.items()}

_USERNAME_RE = re.compile(r"[\w.-]{3,32}")


def logged_in(username: str) -> str:
    """The line printed after a successful login."""
    return f"Successfully logged in as {username}!"


def name_in_use(username: str) -> str:
    """The line printed when a name is taken or already online."""
    return f"Cannot log in as {username}. That username is already in use."


def name_disallowed(username: str) -> str:
    """The line printed when a name has characters outside letters, digits, `_ . -`."""
    return f"Cannot log in as {shown(username)}. That username contains disallowed characters."


def who_header(count: int) -> str:
    """The first line of the `!who` answer; `count` is the number of names that follow."""
    return f"There are {count} online users:"


def user_label(username: str, display_name: str = "") -> str:
    """`alice (Alice Liddell)`, or just `alice` when the display name is empty or only
    differs from the username in case."""
    name = shown(username)
    label = display_name.strip()
    if not label or label.casefold() == username.casefold():
        return name
    return f"{name} ({shown(label)})"


def presence_line(username: str, online: bool, display_name: str = "") -> str:
    """`* alice is online` / `* alice (Alice Liddell) is offline` for another user."""
    return f"* {user_label(username, display_name)} is {'online' if online else 'offline'}"


def incoming_line(
    sender: str, body: str, send_time: datetime, tz: tzinfo | None = None, group: str = ""
) -> str:
    """`[HH:MM] From <sender>: <body>` with HH:MM in `tz` (default: the local time zone).

    A group message reads `[HH:MM] From <sender> in #<group>: <body>`. `send_time`
    must be timezone-aware (the server's timestamp, UTC); `sender` and `body` go
    through `shown` (continuation lines of the body start with CONTINUATION).
    """
    local = send_time.astimezone(tz)
    where = f" in #{shown(group)}" if group else ""
    return f"[{local:%H:%M}] From {shown(sender)}{where}: {shown(body, multiline=True)}"


def group_update_line(group: str, action: str, actor: str, members: Sequence[str]) -> str:
    """`* alice created #team (alice, bob)`-style line for a group membership change.

    `action` is "created", "added" or "left" (anything else reads "changed").
    """
    names = ", ".join(shown(m) for m in members)
    g, who = shown(group), shown(actor)
    if action == "created":
        return f"* {who} created #{g} ({names})"
    if action == "added":
        return f"* {who} added {names} to #{g}"
    if action == "left":
        return f"* {names} left #{g}"
    return f"* #{g} was changed by {who}"


def help_lines() -> list[str]:
    """The lines `!help` prints."""
    rows = [
        ("@<username> <message>", "send a direct message"),
        ("#<group> <message>", "send a message to a group you belong to"),
    ]
    rows += [(f"{name} {args}".strip(), text) for name, (args, text) in COMMAND_HELP.items()]
    width = max(len(left) for left, _ in rows)
    return ["Commands:", *(f"  {left:<{width}}  {text}" for left, text in rows)]


def message_sent_to(recipient: str) -> str:
    """`The message was sent to bob`: the answer to `!random` naming who got it."""
    return f"{MESSAGE_SENT} to {shown(recipient)}"


def delivered_line(recipient: str) -> str:
    """`✓ delivered to bob`: the recipient's client has shown my direct message."""
    return f"✓ delivered to {shown(recipient)}"


def _names(names: Sequence[str]) -> str:
    return ", ".join(shown(n) for n in names)


def group_created(group: str, members: Sequence[str]) -> str:
    """`Group #team created with alice, bob, carol.` (members include the creator)."""
    return f"Group #{shown(group)} created with {_names(members)}."


def members_added(group: str, members: Sequence[str]) -> str:
    """`Added bob, carol to #team.`"""
    return f"Added {_names(members)} to #{shown(group)}."


def group_left(group: str) -> str:
    """`You left #team.`"""
    return f"You left #{shown(group)}."


def groups_header(count: int) -> str:
    """The first line of the `!groups` answer; `count` group lines follow."""
    if count == 0:
        return "You are not in any group."
    return f"You are in {count} group{'' if count == 1 else 's'}:"


def group_listing(group: str, members: Sequence[str]) -> str:
    """`#team: alice, bob, carol`: one line of the `!groups` answer."""
    return f"#{shown(group)}: {_names(members)}"


def group_name_taken(group: str) -> str:
    """The line for a group name that exists already."""
    return f"The group name #{shown(group)} is already taken."


def group_not_found(group: str) -> str:
    """The line for a group that does not exist."""
    return f"The group #{shown(group)} does not exist."


def not_a_member(group: str) -> str:
    """The line for acting on a group one does not belong to."""
    return f"You are not a member of #{shown(group)}."


def user_not_found(username: str) -> str:
    """The line for a conversation partner that does not exist (`!history @ghost`)."""
    return f"The user '{shown(username)}' does not exist."


def group_error_line(reason: str, kind: str, group: str, message: str) -> str:
    """One line for a refused group request (create, add, leave, history, send).

    `reason` is the server's ErrorInfo reason ("" if none), `kind` the ErrorKind value
    ("not_found", "already_exists", "permission_denied", ...), `group` the name as
    typed (a leading '#' is dropped) and `message` the server's sentence, which is
    used as it is when it names a missing user.

    The decision comes from `reason` (the server's stable reasons, docs/protocol.md),
    else from `kind` where it is unambiguous; the message text is never parsed. Without a
    reason, "not_found" may be the group or a user, so the server's sentence is shown.
    """
    name = group.removeprefix("#")
    if reason == "GROUP_NAME_TAKEN" or (not reason and kind == "already_exists"):
        return group_name_taken(name)
    if reason == "NOT_A_MEMBER" or (not reason and kind == "permission_denied"):
        return not_a_member(name)
    if reason == "GROUP_NOT_FOUND":
        return group_not_found(name)
    if kind == "invalid_argument":
        return f"Cannot use #{shown(name)} as a group name: {shown(message)}"
    return shown(message)


def rejection_text(reason: str, kind: str, fields: Collection[str], group: str = "") -> str:
    """The line for a refused send, from the refusal's `reason`, `kind` (the ErrorKind
    value: "not_found", "permission_denied", ...), bad `fields` and the `group` the
    message was addressed to ("" for a direct message).

    Unknown group or not a member (group sends), nobody online (random sends), unknown
    recipient, bad body, and anything else (the header line of docs/cli.md §Wording).
    """
    if reason == "NOBODY_ONLINE":
        return NOBODY_ONLINE
    if group and (reason == "NOT_A_MEMBER" or (not reason and kind == "permission_denied")):
        return not_a_member(group)
    if group and (reason == "GROUP_NOT_FOUND" or (not reason and kind == "not_found")):
        return group_not_found(group)
    if reason == "USER_NOT_FOUND" or kind == "not_found":
        return USER_NOT_FOUND
    if "send.body" in fields or "body" in fields:
        return BODY_ERROR
    return HEADER_ERROR


def canonical_members(typed: Iterable[str], members: Iterable[str]) -> list[str]:
    """The names in `typed` as the group lists them (case-insensitive match), in typed order."""
    by_fold = {m.casefold(): m for m in members}
    out: list[str] = []
    for name in typed:
        shown = by_fold.get(name.casefold(), name)
        if shown not in out:
            out.append(shown)
    return out


def history_header(username: str = "", group: str = "") -> str:
    """`History with bob (newest last):` or `History of #team (newest last):`."""
    if group:
        return f"History of #{shown(group)} (newest last):"
    return f"History with {shown(username)} (newest last):"


def history_line(sender: str, body: str, send_time: datetime, tz: tzinfo | None = None) -> str:
    """`[YYYY-MM-DD HH:MM] alice: text`, the time in `tz` (default: the local time zone)."""
    local = send_time.astimezone(tz)
    return f"[{local:%Y-%m-%d %H:%M}] {shown(sender)}: {shown(body, multiline=True)}"


def display_name_changed(display_name: str) -> str:
    """The answer to `!name`."""
    return f"Your display name is now {shown(display_name)}."


def valid_username(name: str) -> bool:
    """True if `name` is 3-32 letters, digits, `_`, `.` or `-` (the local pre-check)."""
    return _USERNAME_RE.fullmatch(name) is not None


#: What continuation lines of a multi-line body start with, so that no received text can
#: make a line that looks like a Hubbub notice ("[12:01] From admin: ...", "* ...").
CONTINUATION = "  │ "

#: Line and paragraph separators (Zl, Zp): line breaks that are not control characters.
#: (The bidirectional controls of UAX #9, U+200E/F, U+061C, U+202A-E and U+2066-9, are
#: format characters, Cf, which `sanitize` escapes; VT, FF and NEL are C0/C1 controls.)
_SEPARATORS = frozenset({"\u2028", "\u2029"})


def shown(text: str, *, multiline: bool = False) -> str:
    """Received text (bodies, names, group names, server sentences) as it may be printed.

    THE one function every piece of text from the network goes through before it
    reaches the screen, so that a sender cannot forge a line of the client's own:
    control characters (C0, DEL, C1, ESC) are shown in caret/escape form (`^[`,
    `\\x85`), format characters such as the bidi controls as `<U+202E>`, line and
    paragraph separators as `<U+2028>`. A newline (or CR LF) is a line break only when
    `multiline` (message bodies): each continuation line then starts with
    CONTINUATION ("  │ "); otherwise it is shown as `^J`. Returns a str with no control
    character other than tab (and, when `multiline`, newline followed by CONTINUATION).
    """
    text = text.replace("\r\n", "\n")
    out: list[str] = []
    for ch in text:
        if ch == "\n":
            out.append("\n" + CONTINUATION if multiline else "^J")
        elif ch in _SEPARATORS:
            out.append(f"<U+{ord(ch):04X}>")
        else:
            out.append(sanitize(ch))
    return "".join(out)


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
