"""Safe text for the full-screen client: network strings become rich `Text`, never markup.

Every string that came from the server (bodies, usernames, display names, group
names) passes through `visible` before it is drawn: control characters become caret
or escape form (`render.sanitize`, the line-mode rule), line and paragraph
separators (U+2028/U+2029) and bidi/zero-width format characters become `<U+XXXX>`,
tabs become spaces. A body's newlines are structure, not text: each extra line is an
indented continuation row, and so is every row a long line wraps onto, so only the
client itself ever writes in the time column and no sender can forge a line.

The fixed text of the full-screen client lives here too: the key help of `!help`
(`KEY_HELP`) and the message pane's title (`pane_title`).
"""

from __future__ import annotations

import unicodedata
import zlib
from collections.abc import Sequence
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Final

from rich.console import Console
from rich.text import Text

from .. import render

if TYPE_CHECKING:
    from .conversations import ConversationState
    from .model import ChatState

#: Cells of the time column ("14:02 "); continuation rows are indented by as many.
TIME_WIDTH: Final = 6

#: Sender colours, picked by a stable hash of the username.
_PALETTE: Final = ("cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan")

#: The ✓ shown after one's own direct message once the recipient's client has shown it.
TICK_DELIVERED: Final = "✓"
TICK_SENDING: Final = "…"
TICK_FAILED: Final = "✗ not sent"


def visible(text: str) -> str:
    """`text` (one line, no newline kept) with nothing left that could move the cursor,
    change colours, reorder the line or start a new one.

    C0/C1 controls (newline included) as `render.sanitize` shows them (`^[`, `\\x85`),
    format characters (Unicode category Cf: bidi overrides, zero-width joiners) and
    line/paragraph separators (Zl, Zp) as `<U+XXXX>`, a tab as four spaces.
    """
    if text.isprintable():
        return text
    out: list[str] = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif ch == "\t":
            out.append("    ")
        elif ch == "\n":
            out.append("^J")
        elif unicodedata.category(ch) in ("Zl", "Zp"):
            out.append(f"<U+{ord(ch):04X}>")
        else:
            out.append(render.sanitize(ch))
    return "".join(out)


def body_lines(body: str) -> list[str]:
    """A message body split at its newlines (CRLF counts as one), each line `visible`."""
    return [visible(line) for line in body.replace("\r\n", "\n").split("\n")]


def sender_style(username: str) -> str:
    """A stable colour for `username` (bold), so a name looks the same everywhere."""
    colour = _PALETTE[zlib.crc32(username.casefold().encode()) % len(_PALETTE)]
    return f"bold {colour}"


def user_label(username: str, display_name: str = "") -> str:
    """`alice (Alice Liddell)`, or `alice`: the username first, so a display name cannot
    pass for another user (the line-mode `render.user_label` with `visible` applied)."""
    shown = display_name.strip()
    if not shown or shown.casefold() == username.casefold():
        return visible(username)
    return f"{visible(username)} ({visible(shown)})"


def clock_time(when: datetime, tz: tzinfo | None) -> str:
    """`HH:MM` of the aware datetime `when` in `tz` (None: the local time zone)."""
    return f"{when.astimezone(tz):%H:%M}"


def day_label(when: datetime, tz: tzinfo | None) -> str:
    """`Tuesday 1 December 2026`: the local day of `when`, for day separators."""
    local = when.astimezone(tz)
    return f"{local:%A} {local.day} {local:%B %Y}"


def message_content(label: str, style: str, body: str, suffix: Text | None = None) -> Text:
    """`label: body` as Text: the label styled, the body plain and `visible`, its lines
    joined by newlines (which `wrap_rows` turns into continuation rows)."""
    content = Text()
    content.append(label, style=style)
    content.append(": ")
    content.append("\n".join(body_lines(body)))
    if suffix is not None:
        content.append(" ")
        content.append_text(suffix)
    return content


def wrap_rows(time_text: str, content: Text, width: int, console: Console) -> list[Text]:
    """Lay `content` out in `width` cells behind a time column: the first row starts
    with `time_text` (dim), every other row (newline or wrap) with `TIME_WIDTH` spaces.

    Returns one Text per screen row, each at most `width` cells.
    """
    inner = max(width - TIME_WIDTH, 8)
    rows: list[Text] = []
    for index, line in enumerate(content.wrap(console, inner, overflow="fold")):
        row = Text()
        if index == 0:
            row.append(f"{time_text:<{TIME_WIDTH}}", style="dim")
        else:
            row.append(" " * TIME_WIDTH)
        line.rstrip()
        row.append_text(line)
        rows.append(row)
    return rows or [Text(f"{time_text:<{TIME_WIDTH}}", style="dim")]


def rule_row(label: str, width: int, style: str = "dim") -> Text:
    """`──── label ────` centred in `width` cells (day separators, the unread marker)."""
    text = f" {label} "
    side = max(width - len(text), 2)
    left = side // 2
    return Text("─" * left + text + "─" * (side - left), style=style)


def plain_rows(rows: Sequence[Text]) -> list[str]:
    """The rows as plain strings (for tests and screen dumps)."""
    return [row.plain for row in rows]


#: Lines `!help` adds for the keys of the full-screen client.
KEY_HELP: tuple[str, ...] = (
    "Keys:",
    "  ctrl+n / alt+down    next conversation",
    "  ctrl+p / alt+up      previous conversation",
    "  pageup / pagedown    scroll the messages (older ones load at the top)",
    "  tab                  complete @name, #group or !command",
    "  up / down            the lines typed before",
    "  ctrl+k               command palette",
    "  ctrl+q               quit",
    "A line without @ or # goes to the open conversation.",
)


def pane_title(state: ChatState, conversation: ConversationState | None) -> Text:
    """The message pane's title: `@bob (Bob) · online`, or `#team · alice, bob, carol`."""
    if conversation is None:
        return Text("Hubbub")
    key = conversation.key
    if key.kind == "group":
        title = Text(f"#{visible(conversation.title)}", style="bold")
        if conversation.members:
            title.append(" · " + ", ".join(visible(m) for m in conversation.members))
        return title
    title = Text("@" + user_label(conversation.title, state.display_name(key.name)))
    title.stylize("bold")
    title.append(" · online" if state.online(key.name) else " · offline")
    return title
