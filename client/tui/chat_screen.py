"""The chat screen of the full-screen client: sidebar of conversations, message pane,
input line, status bar.

It is the controller: it feeds `ChatSession` events into the sans-I/O `ChatState` and
redraws; typed lines are parsed by `parsing.parse_line`, the same parser as the line-mode
client, so the `!` commands mean the same in both.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Input, OptionList

from .. import parsing, render
from ..errors import ErrorKind, HubbubError
from ..events import (
    ConnectionLost,
    DeliveryReceipt,
    EventRejected,
    GroupUpdate,
    IncomingMessage,
    PresenceChanged,
    Reconnected,
    SendConfirmed,
)
from . import text as tx
from .conversations import ConversationKey
from .model import ChatState
from .password_screen import PasswordScreen
from .session import ChatSession
from .widgets import ChatInput, ChatSuggester, MessageLog, PaneView, Sidebar, StatusBar, status_text

if TYPE_CHECKING:
    from .app import HubbubApp


class ChatScreen(Screen[None]):
    """Sidebar of conversations, the open conversation, the input line, the status bar."""

    DEFAULT_CSS = """
    #sidebar { width: 28; height: 1fr; border: round $panel-lighten-2; }
    #sidebar:focus { border: round $accent; }
    #messages { border: round $panel-lighten-2; }
    #messages:focus { border: round $accent; }
    #main { height: 1fr; }
    #input { dock: bottom; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+n", "step(1)", "Next", priority=True),
        Binding("ctrl+p", "step(-1)", "Previous", priority=True),
        Binding("alt+down", "step(1)", "Next", show=False, priority=True),
        Binding("alt+up", "step(-1)", "Previous", show=False, priority=True),
        Binding("pageup", "page(-1)", "Older", show=False, priority=True),
        Binding("pagedown", "page(1)", "Newer", show=False, priority=True),
    ]

    def __init__(
        self,
        state: ChatState,
        session: ChatSession,
        *,
        server: str,
        clock: Callable[[], datetime],
        tz: tzinfo | None,
        live: bool = True,
    ) -> None:
        super().__init__()
        self.state = state
        self.session = session
        self.server = server
        self.clock = clock
        self.tz = tz
        self.live = live
        self.connection = "connected"
        self.notice: Text | None = None
        #: The conversation the notice is about (opening it clears the notice).
        self._notice_key: ConversationKey | None = None
        self._retry_at: float | None = None
        #: Body of each unconfirmed random send (shown once the server names the recipient).
        self._random_bodies: dict[str, str] = {}
        #: Group of each unconfirmed group send (for the wording of a refusal).
        self._group_sends: dict[str, str] = {}

    # --- layout

    def compose(self) -> ComposeResult:
        """Sidebar | (messages, input); status bar and key footer below."""
        with Horizontal():
            sidebar = Sidebar(id="sidebar")
            sidebar.border_title = "Conversations"
            yield sidebar
            with Vertical(id="main"):
                yield MessageLog(id="messages")
                yield ChatInput(
                    placeholder="message (or @name, #group, !help)",
                    suggester=ChatSuggester(self.state.known_names, self.state.group_names),
                    id="input",
                )
        yield StatusBar(id="status")
        yield Footer()

    @property
    def pane(self) -> MessageLog:
        """The message pane."""
        return self.query_one(MessageLog)

    @property
    def sidebar(self) -> Sidebar:
        """The sidebar."""
        return self.query_one(Sidebar)

    @property
    def input(self) -> ChatInput:
        """The input line."""
        return self.query_one(ChatInput)

    def on_mount(self) -> None:
        """Draw, focus the input, start the event loop and the start-up loading."""
        self.redraw(reset=True)
        self.input.focus()
        self.set_interval(1.0, self._tick)
        if self.live:
            self._events()
            self._bootstrap()

    # --- drawing

    def redraw(self, *, reset: bool = False, pane: bool = True) -> None:
        """Redraw the sidebar, the status bar and (if `pane`) the message pane."""
        self.sidebar.show_state(self.state)
        if pane:
            conversation = (
                self.state.conversations.get(self.state.active) if self.state.active else None
            )
            self.pane.show(PaneView(self.state, conversation, self.tz), reset=reset)
            self.pane.border_title = tx.pane_title(self.state, conversation)
        self._draw_status()

    def _draw_status(self) -> None:
        connection = self.connection
        if connection != "connected" and self._retry_at is not None:
            left = max(0, round(self._retry_at - time.monotonic()))
            connection = f"◌ reconnecting (next try in {left} s)"
        self.query_one(StatusBar).update(
            status_text(self.server, self.state.me, connection, self.notice)
        )

    def _tick(self) -> None:
        if self.connection != "connected":
            self._draw_status()

    def note(self, text: str, key: ConversationKey | None = None) -> None:
        """Add a client note (safe text) to `key` or the open conversation and redraw."""
        self.state.note(text, self.clock(), key)
        self.redraw(pane=key is None or key == self.state.active)

    def open(self, key: ConversationKey) -> None:
        """Open the conversation `key` (its unread messages become read)."""
        conversation = self.state.open(key)
        if self.notice is not None and self._notice_key == key:
            self.notice = None
        self.redraw(reset=True)
        if conversation.history_token is None or (
            not conversation.history_complete and len(conversation.messages()) < 20
        ):
            self.load_older(key)

    def action_step(self, step: int) -> None:
        """Open the next (1) or previous (-1) conversation of the sidebar."""
        key = self.state.neighbour(step)
        if key is not None:
            self.open(key)

    def action_page(self, direction: int) -> None:
        """Scroll the messages one page up (-1) or down (1)."""
        if direction < 0:
            self.pane.scroll_page_up(animate=False)
        else:
            self.pane.scroll_page_down(animate=False)

    @on(OptionList.OptionSelected, "#sidebar")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        for conversation in self.state.conversations.values():
            if conversation.key.id == event.option.id:
                self.open(conversation.key)
                self.input.focus()
                return

    @on(MessageLog.NeedOlder)
    def _need_older(self, event: MessageLog.NeedOlder) -> None:
        self.load_older(event.key)

    # --- network work

    @work(group="history")
    async def load_older(self, key: ConversationKey) -> None:
        """Load the next older history page of `key` into the pane."""
        conversation = self.state.conversations.get(key)
        if conversation is None or conversation.loading or conversation.history_complete:
            return
        if not self.live:
            return
        conversation.loading = True
        if key == self.state.active:
            self.redraw()
        try:
            page = await self.session.history(key, conversation.history_token or "")
        except HubbubError as exc:
            conversation.loading = False
            if exc.kind is ErrorKind.NOT_FOUND and not conversation.messages():
                # `!history @ghost` or a group that is gone: no conversation to keep.
                self.state.remove(key)
                gone = (
                    render.group_not_found(key.name)
                    if key.kind == "group"
                    else render.user_not_found(key.name)
                )
                self.note(gone)
                return
            self._failed("load the history", exc, key)
            return
        self.state.add_history(key, page.messages, page.next_page_token)
        self.redraw(pane=key == self.state.active)

    @work(group="bootstrap")
    async def _bootstrap(self) -> None:
        try:
            await self.session.bootstrap(self.state)
        except HubbubError as exc:
            self._failed("load your conversations", exc)
            return
        if self.state.active is None:
            ordered = self.state.ordered()
            if ordered:
                self.open(ordered[0].key)
                return
        self.redraw()

    @work(group="events")
    async def _events(self) -> None:
        conversation = self.session.conversation
        assert conversation is not None
        try:
            async for event in conversation:
                self.handle(event)
        except HubbubError as exc:
            self.connection = "offline"
            self._draw_status()
            app = self.hubbub_app()
            app.run_worker(app.session_ended(render.sanitize(exc.message)), group="start")

    def hubbub_app(self) -> HubbubApp:
        """The app, typed."""
        from .app import HubbubApp

        assert isinstance(self.app, HubbubApp)
        return self.app

    def retry_in(self, delay: float) -> None:
        """(From the backoff) the next reconnect attempt is `delay` seconds away."""
        self._retry_at = time.monotonic() + delay
        self._draw_status()

    def handle(self, event: object) -> None:
        """Apply one chat event to the state and redraw what changed."""
        conversation = self.session.conversation
        key: ConversationKey | None = None
        if isinstance(event, IncomingMessage):
            arrival = self.state.receive(event)
            if conversation is not None:
                conversation.ack(event.sequence)
            if arrival.unread:
                where = f" in #{tx.visible(event.group)}" if event.group else ""
                notice = Text("✉ ", style="bold yellow")
                notice.append(f"new message from {tx.visible(event.sender)}{where}", style="bold")
                self.notice = notice
                self._notice_key = arrival.key
            self.redraw(pane=arrival.key == self.state.active)
        elif isinstance(event, DeliveryReceipt):
            key = self.state.delivered(event)
            if conversation is not None:
                conversation.ack(event.sequence)
            self.redraw(pane=key == self.state.active)
        elif isinstance(event, GroupUpdate):
            key = self.state.group_changed(event)
            if conversation is not None:
                conversation.ack(event.sequence)
            if key in self.state.conversations and event.actor != self.state.me:
                line = render.group_update_line(
                    event.group, event.action, event.actor, event.members
                )
                self.note(line, key)
            else:
                self.redraw()
        elif isinstance(event, SendConfirmed):
            body = self._random_bodies.pop(event.client_id, "")
            self._group_sends.pop(event.client_id, None)
            key = self.state.confirmed(event, body)
            if body and key is not None:
                self.note(render.message_sent_to(event.recipient))
            self.redraw()
        elif isinstance(event, EventRejected):
            group = self._group_sends.pop(event.client_id, "")
            self._random_bodies.pop(event.client_id, None)
            key = self.state.rejected(event)
            self.note(
                render.rejection_text(event.reason, event.kind.value, event.fields(), group), key
            )
        elif isinstance(event, PresenceChanged):
            self.state.set_presence(event.user)
            self.redraw(pane=False)
        elif isinstance(event, ConnectionLost):
            self.connection = "◌ reconnecting…"
            self._draw_status()
        elif isinstance(event, Reconnected):
            self.connection = "connected"
            self._retry_at = None
            self.state.mark_online(event.welcome.online_users)
            self.redraw(pane=False)

    def _failed(self, what: str, exc: HubbubError, key: ConversationKey | None = None) -> None:
        if exc.kind is ErrorKind.UNAVAILABLE:
            self.note(render.SERVER_UNREACHABLE, key)
        else:
            self.note(f"* Cannot {what}: {render.sanitize(exc.detail())}", key)

    # --- typed lines

    @on(Input.Submitted, "#input")
    def _submitted(self, event: Input.Submitted) -> None:
        line = event.value
        self.input.remember(line)
        self.input.value = ""
        self.submit(line)

    def submit(self, line: str) -> None:
        """Act on one typed line: a message or a `!` command (as the line-mode client)."""
        stripped = line.strip()
        if not stripped:
            return
        if stripped[0] not in "@#!":
            self._send_here(line.strip())
            return
        parsed = parsing.parse_line(line)
        conversation = self.session.conversation
        if isinstance(parsed, parsing.DirectMessage):
            self._send(ConversationKey.user(parsed.recipient), parsed.body, parsed.recipient)
        elif isinstance(parsed, parsing.GroupMessage):
            self._send(ConversationKey.group(parsed.group), parsed.body, parsed.group)
        elif isinstance(parsed, parsing.RandomMessage):
            if conversation is not None:
                cid = conversation.send_random(parsed.body)
                self._random_bodies[cid] = parsed.body
                self.state.sending(None, cid, parsed.body, self.clock())
                self.note("Sending to a random online user…")
        elif isinstance(parsed, parsing.Command):
            self._command(parsed.name)
        elif isinstance(parsed, parsing.Invalid):
            self.note(parsed.message)
        elif not isinstance(parsed, parsing.Empty):
            self._request(parsed)

    def _send_here(self, body: str) -> None:
        key = self.state.active
        if key is None:
            self.note("Open a conversation first, or type @name message.")
            return
        self._send(key, body, self.state.conversations[key].title)

    def _send(self, key: ConversationKey, body: str, title: str) -> None:
        conversation = self.session.conversation
        if conversation is None:
            return
        if key.kind == "group":
            cid = conversation.send("", body, group=title)
            self._group_sends[cid] = title
        else:
            cid = conversation.send(title, body)
        self.state.sending(key, cid, body, self.clock(), title)
        if self.state.active != key:
            self.open(key)
        else:
            self.redraw()

    def _command(self, name: str) -> None:
        if name == "!quit":
            self.run_worker(self.hubbub_app().action_quit())
        elif name == "!help":
            self.note("\n".join((*render.help_lines(), *tx.KEY_HELP)))
        elif name == "!password":
            self.app.push_screen(PasswordScreen(), self._password_chosen)
        elif name == "!who":
            self._who()
        elif name == "!groups":
            self._groups()

    def _password_chosen(self, result: tuple[str, str] | None) -> None:
        if result is None:
            self.note("The password was not changed.")
        else:
            self._change_password(*result)

    @work(group="commands")
    async def _change_password(self, current: str, new: str) -> None:
        try:
            await self.session.client.update_profile(new_password=new, current_password=current)
        except HubbubError as exc:
            if exc.kind is ErrorKind.UNAUTHENTICATED:
                self.note(render.sanitize(exc.message))
            else:
                self._failed("change the password", exc)
            return
        self.session.password = new
        if self.session.conversation is not None:
            self.session.conversation.password = new
        self.note(render.PASSWORD_CHANGED)

    @work(group="commands")
    async def _who(self) -> None:
        try:
            users = await self.session.client.list_users(online_only=True)
        except HubbubError as exc:
            self._failed("list the users", exc)
            return
        self.state.set_users(users)
        lines = [render.who_header(len(users))]
        lines += [render.user_label(u.username, u.display_name) for u in users]
        self.note("\n".join(lines))

    @work(group="commands")
    async def _groups(self) -> None:
        try:
            groups = await self.session.client.list_groups()
        except HubbubError as exc:
            self._failed("list your groups", exc)
            return
        self.state.set_groups((g.name, g.members) for g in groups)
        lines = [render.groups_header(len(groups))]
        lines += [render.group_listing(g.name, g.members) for g in groups]
        self.note("\n".join(lines))

    @work(group="commands")
    async def _request(self, parsed: parsing.ParsedLine) -> None:
        client = self.session.client
        try:
            if isinstance(parsed, parsing.CreateGroup):
                group = await client.create_group(parsed.group, parsed.members)
                key = ConversationKey.group(group.name)
                self.state.set_groups([(group.name, group.members)])
                self.state.conversation(key).history_token = ""
                self.open(key)
                self.note(render.group_created(group.name, group.members))
            elif isinstance(parsed, parsing.AddMembers):
                group = await client.add_group_members(parsed.group, parsed.members)
                self.state.set_groups([(group.name, group.members)])
                added = render.canonical_members(parsed.members, group.members)
                self.note(render.members_added(group.name, added))
            elif isinstance(parsed, parsing.LeaveGroup):
                await client.leave_group(parsed.group)
                self.state.remove(ConversationKey.group(parsed.group))
                self.note(render.group_left(parsed.group))
            elif isinstance(parsed, parsing.SetDisplayName):
                user = await client.update_profile(display_name=parsed.display_name)
                self.state.my_display_name = user.display_name
                self.note(render.display_name_changed(user.display_name or parsed.display_name))
            elif isinstance(parsed, parsing.ShowHistory):
                if parsed.group:
                    self.open(ConversationKey.group(parsed.group))
                else:
                    self.open(ConversationKey.user(parsed.username))
        except HubbubError as exc:
            group_name = getattr(parsed, "group", "")
            if group_name and exc.kind is not ErrorKind.UNAVAILABLE:
                self.note(render.group_error_line(exc.reason, exc.kind.value, group_name,
                                                  exc.detail()))  # fmt: skip
            else:
                self._failed("do that", exc)
