"""Widgets of the full-screen client: the conversation sidebar, the message pane, the
status bar and the input line with `@name` / `#group` / `!command` completion.

Every string from the network reaches the screen as a rich `Text` built by `text.py`
(never as markup), so a body or a name cannot style, move or forge anything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, tzinfo
from typing import Any, ClassVar

from rich.console import Console
from rich.segment import Segment
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.suggester import Suggester
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from .. import render
from . import text as tx
from .conversations import ConversationKey, ConversationState, Entry, MessageEntry, NoteEntry
from .model import ChatState

# --- sidebar ------------------------------------------------------------------------------


def sidebar_prompt(state: ChatState, conversation: ConversationState) -> Text:
    """One sidebar row: presence dot (● online, ○ offline) or `#`, the name, the unread count."""
    row = Text()
    if conversation.key.kind == "group":
        row.append("# ", style="bold")
    elif state.online(conversation.key.name):
        row.append("● ", style="green")
    else:
        row.append("○ ", style="dim")
    row.append(tx.visible(conversation.title), style="bold" if conversation.unread else "")
    if conversation.unread:
        row.append(f" ({conversation.unread})", style="bold reverse")
    return row


class Sidebar(OptionList):
    """The conversations, most recent activity first; selecting one (Enter or a click)
    opens it (the screen handles `OptionList.OptionSelected`)."""

    def show_state(self, state: ChatState) -> None:
        """Rebuild the rows from `state`, keeping the active conversation highlighted."""
        ordered = state.ordered()
        self.set_options(Option(sidebar_prompt(state, c), id=c.key.id) for c in ordered)
        keys = [c.key for c in ordered]
        if state.active in keys:
            self.highlighted = keys.index(state.active)


# --- message pane -------------------------------------------------------------------------


@dataclass(frozen=True)
class PaneView:
    """What the pane shows: a conversation (or None for the console notes), the state it
    belongs to, and the time zone for times (None: local)."""

    state: ChatState
    conversation: ConversationState | None
    tz: tzinfo | None


def _tick(entry: MessageEntry, group: bool) -> Text | None:
    if not entry.own:
        return None
    if entry.state == "sending":
        return Text(tx.TICK_SENDING, style="dim")
    if entry.state == "failed":
        return Text(tx.TICK_FAILED, style="bold red")
    if entry.state == "delivered" and not group:
        return Text(tx.TICK_DELIVERED, style="green")
    return None


def entry_rows(
    entry: Entry, state: ChatState, width: int, console: Console, tz: tzinfo | None, group: bool
) -> list[Text]:
    """The screen rows of one message or note at `width` cells."""
    if isinstance(entry, NoteEntry):
        content = Text(entry.text, style="italic")
        return tx.wrap_rows(tx.clock_time(entry.time, tz), content, width, console)
    if entry.own:
        label = tx.user_label(entry.sender, state.my_display_name or entry.sender_display_name)
    else:
        label = tx.user_label(
            entry.sender, entry.sender_display_name or state.display_name(entry.sender)
        )
    content = tx.message_content(
        label, tx.sender_style(entry.sender), entry.body, _tick(entry, group)
    )
    return tx.wrap_rows(tx.clock_time(entry.send_time, tz), content, width, console)


def _entry_key(entry: Entry, state: ChatState, width: int, group: bool) -> tuple[object, ...]:
    """What the rows of `entry` depend on (for the row cache)."""
    if isinstance(entry, NoteEntry):
        return (entry.order, width)
    return (
        entry.order, width, group, entry.state, entry.send_time, state.my_display_name,
        entry.sender_display_name or state.display_name(entry.sender),
    )  # fmt: skip


RowCache = dict[tuple[object, ...], list[Text]]


def pane_rows(
    view: PaneView, width: int, console: Console, cache: RowCache | None = None
) -> tuple[list[Text], dict[int, int]]:
    """All rows of the pane and, per entry `order`, the row it starts at.

    `cache` (entry key → rows) is read and refilled so unchanged entries are not laid
    out again; only the entries drawn this time are kept in it.

    A header row (older messages can be loaded / loading / beginning of the
    conversation), a day separator before the first entry of each local day and the
    "new messages" marker before the first entry that was unread.
    """
    rows: list[Text] = []
    starts: dict[int, int] = {}
    old = dict(cache) if cache is not None else None
    if cache is not None:
        cache.clear()
    conversation = view.conversation
    if conversation is None:
        entries: Sequence[Entry] = view.state.console
        if not entries:
            rows.append(Text("No conversation open.", style="dim"))
            rows.append(
                Text("Type @name message to start one, or !help for the commands.", style="dim")
            )
    else:
        entries = conversation.entries
        if conversation.loading:
            rows.append(Text("Loading older messages…", style="dim italic"))
        elif conversation.history_complete:
            rows.append(tx.rule_row(f"beginning of {_title(conversation)}", width))
        else:
            rows.append(Text("↑ scroll up for older messages", style="dim italic"))
    group = conversation is not None and conversation.key.kind == "group"
    day: date | None = None
    for entry in entries:
        when = entry.send_time if isinstance(entry, MessageEntry) else entry.time
        local_day = when.astimezone(view.tz).date()
        if local_day != day:
            day = local_day
            rows.append(tx.rule_row(tx.day_label(when, view.tz), width))
        if conversation is not None and conversation.marker_order == entry.order:
            rows.append(tx.rule_row("new messages", width, style="bold red"))
        starts[entry.order] = len(rows)
        key = _entry_key(entry, view.state, width, group)
        laid_out = old.get(key) if old is not None else None
        if laid_out is None:
            laid_out = entry_rows(entry, view.state, width, console, view.tz, group)
        if cache is not None:
            cache[key] = laid_out
        rows.extend(laid_out)
    return rows, starts


def _title(conversation: ConversationState) -> str:
    if conversation.key.kind == "group":
        return f"#{tx.visible(conversation.title)}"
    return tx.visible(conversation.title)


class MessageLog(ScrollView, can_focus=True):
    """The messages of the open conversation (Line API: one Strip per screen row).

    Scrolling to the top posts `NeedOlder` while older history remains; new rows keep
    the view at the bottom if it was there, else the entry at the top stays in place
    (so history loaded above does not move what is being read).
    """

    DEFAULT_CSS = """
    MessageLog {
        height: 1fr;
        overflow-y: scroll;
        overflow-x: hidden;
        padding: 0 0 0 1;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "scroll_up", "Scroll up", show=False),
        Binding("down", "scroll_down", "Scroll down", show=False),
        Binding("home", "scroll_home", "Top", show=False),
        Binding("end", "scroll_end", "Bottom", show=False),
    ]

    class NeedOlder(Message):
        """The pane reached its top and `key` has older history to load."""

        def __init__(self, key: ConversationKey) -> None:
            super().__init__()
            self.key = key

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.view: PaneView | None = None
        self.rows: list[Text] = []
        self._strips: list[Strip] = []
        self._starts: dict[int, int] = {}
        self._width = 0
        self._row_cache: RowCache = {}
        #: id(row) → (row, strip): the row is kept so its id cannot be reused meanwhile.
        self._strip_cache: dict[int, tuple[Text, Strip]] = {}

    def show(self, view: PaneView, *, reset: bool = False) -> None:
        """Draw `view`; `reset` (another conversation) scrolls to the bottom."""
        at_end = reset or self.is_vertical_scroll_end or not self._strips
        anchor = None if at_end else self._top_entry()
        self.view = view
        self._rebuild()
        if at_end:
            self.scroll_to(y=max(len(self._strips) - self.scrollable_content_region.height, 0),
                           animate=False, immediate=True)  # fmt: skip
        elif anchor is not None:
            order, offset = anchor
            start = self._starts.get(order)
            if start is not None:
                self.scroll_to(y=max(start + offset, 0), animate=False, immediate=True)
        self.refresh()
        self._maybe_need_older()

    def _top_entry(self) -> tuple[int, int] | None:
        """The entry at the top of the view and the view's offset from its first row
        (negative when the view starts above the first entry, e.g. at the header)."""
        top = round(self.scroll_y)
        if not self._starts:
            return None
        above = [(start, order) for order, start in self._starts.items() if start <= top]
        start, order = (
            max(above) if above else min((start, order) for order, start in self._starts.items())
        )
        return order, top - start

    def _rebuild(self) -> None:
        width = self.scrollable_content_region.width or self.size.width or 80
        self._width = width
        if self.view is None:
            self.rows, self._starts = [], {}
        else:
            self.rows, self._starts = pane_rows(self.view, width, self.app.console, self._row_cache)
        strips: dict[int, tuple[Text, Strip]] = {}
        for row in self.rows:
            cached = self._strip_cache.get(id(row))
            if cached is None or cached[0] is not row or cached[1].cell_length != width:
                cached = (row, self._strip(row, width))
            strips[id(row)] = cached
        self._strip_cache = strips
        self._strips = [strips[id(row)][1] for row in self.rows]
        self.virtual_size = Size(width, len(self._strips))

    def _strip(self, row: Text, width: int) -> Strip:
        segments: list[Segment] = list(row.render(self.app.console, end=""))
        return Strip(segments).adjust_cell_length(width)

    def on_resize(self) -> None:
        """Re-wrap for the new width."""
        if self.view is not None and self.scrollable_content_region.width != self._width:
            self.show(self.view)

    def render_line(self, y: int) -> Strip:
        """Row `y` of the visible region."""
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.scrollable_content_region.width
        if index >= len(self._strips):
            return Strip.blank(width, self.rich_style)
        return self._strips[index].crop_extend(scroll_x, scroll_x + width, self.rich_style)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        """Ask for older history when the top is reached."""
        super().watch_scroll_y(old_value, new_value)
        if new_value <= 0:
            self._maybe_need_older()

    def _maybe_need_older(self) -> None:
        view = self.view
        if view is None or view.conversation is None:
            return
        conversation = view.conversation
        if conversation.loading or conversation.history_complete:
            return
        if round(self.scroll_y) <= 0:
            self.post_message(self.NeedOlder(conversation.key))

    def plain_lines(self) -> list[str]:
        """Every row as plain text (tests and screen dumps)."""
        return tx.plain_rows(self.rows)


# --- status bar ---------------------------------------------------------------------------


def status_text(server: str, me: str, connection: str, notice: Text | None, width: int = 0) -> Text:
    """`server · user · state`, then the notice (another conversation got a message)."""
    line = Text()
    line.append(f" {tx.visible(server)}", style="bold")
    line.append("  ·  ")
    line.append(tx.visible(me) or "not logged in")
    line.append("  ·  ")
    if connection == "connected":
        line.append("● connected", style="green")
    else:
        line.append(connection, style="bold yellow")
    if notice is not None:
        line.append("  ·  ")
        line.append_text(notice)
    return line


class StatusBar(Static):
    """One line at the bottom: server, user, connection state and the latest notice."""

    DEFAULT_CSS = """
    StatusBar {
        height: 1;
        background: $panel;
        color: $text;
    }
    """


# --- input --------------------------------------------------------------------------------


class ChatSuggester(Suggester):
    """Completes `!commands` at the start of the line and the last word if it starts
    with `@` (a known user) or `#` (one of my groups). Names come from `names()` and
    `groups()` at the time of typing."""

    def __init__(
        self, names: Callable[[], Sequence[str]], groups: Callable[[], Sequence[str]]
    ) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self._names = names
        self._groups = groups

    async def get_suggestion(self, value: str) -> str | None:
        """The completed line, or None."""
        return complete(value, self._names(), self._groups())


def complete(value: str, names: Sequence[str], groups: Sequence[str]) -> str | None:
    """The line `value` with its last word completed (first match in sorted order), or
    None. `!com` → a command; `@al` → `@alice `; `#te` → `#team `."""
    if not value or value[-1].isspace():
        return None
    head, _, word = value.rpartition(" ")
    prefix = head + " " if head else ""
    if word.startswith("!") and not head.strip():
        for command in render.COMMANDS:
            if command.startswith(word.lower()) and command != word.lower():
                return prefix + command + " "
        return None
    if word[:1] in ("@", "#"):
        known = names if word[0] == "@" else groups
        typed = word[1:].casefold()
        for name in sorted(known, key=str.casefold):
            if name.casefold().startswith(typed) and name.casefold() != typed:
                return f"{prefix}{word[0]}{name} "
    return None


class ChatInput(Input):
    """The input line; Tab (or →) accepts the completion shown after the cursor, ↑/↓
    recall the lines typed before (kept in memory only, at most `HISTORY` of them)."""

    HISTORY: ClassVar[int] = 200
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("tab", "accept_suggestion", "Complete", show=False, priority=True),
        Binding("up", "recall(-1)", "Previous line", show=False),
        Binding("down", "recall(1)", "Next line", show=False),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._lines: list[str] = []
        self._recall = 0

    def remember(self, line: str) -> None:
        """Keep `line` for ↑ (not a repeat of the last one)."""
        if line and (not self._lines or self._lines[-1] != line):
            self._lines = [*self._lines, line][-self.HISTORY :]
        self._recall = len(self._lines)

    def action_recall(self, step: int) -> None:
        """Show the previous (-1) or next (1) remembered line; past the newest, empty."""
        if not self._lines:
            return
        self._recall = max(0, min(len(self._lines), self._recall + step))
        self.value = self._lines[self._recall] if self._recall < len(self._lines) else ""
        self.cursor_position = len(self.value)

    def action_accept_suggestion(self) -> None:
        """Take the suggestion if there is one, else move the focus on as Tab does."""
        if self._suggestion and self.cursor_at_end:
            self.value = self._suggestion
            self.cursor_position = len(self.value)
        else:
            self.screen.focus_next()
