"""`hubbub tui`: the full-screen client (Textual).

`HubbubApp(TuiConfig(...))` starts with the saved login if it is valid for the server
(else the login screen), then shows the chat. The app never builds a connection
itself: `TuiConfig.connect` is a factory of ready `Client`s, so the CLI's server,
TLS and fail-over options plug in unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path

from textual.app import App, SystemCommand
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import Label

from .. import render
from ..client import DEFAULT_SERVER, Client
from ..errors import ErrorKind, HubbubError
from ..session_store import SessionFileError, load_session
from .chat_screen import ChatScreen
from .conversations import ConversationKey
from .login_screens import LoginScreen
from .model import ChatState
from .session import ChatSession, ClientFactory, remember, usable_saved_session
from .text import visible


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class TuiConfig:
    """How the full-screen client connects and shows time.

    `server` is the address shown in the status bar and stored with a saved login;
    `connect` makes a connected `Client` (HubbubError(UNAVAILABLE) if unreachable);
    `session_file` is the saved-login file (None: session_store's default);
    `use_saved_session` reuses a valid saved login; `remember_login` lets the login
    screen save one; `tz` is the zone of displayed times (None: local); `clock` gives
    the current aware time (for notes and unsent messages).
    """

    server: str
    connect: ClientFactory
    session_file: Path | None = None
    use_saved_session: bool = True
    remember_login: bool = True
    tz: tzinfo | None = None
    clock: Callable[[], datetime] = field(default=_utc_now)


class StartScreen(Screen[None]):
    """Shown while the saved login is tried."""

    def compose(self) -> Iterable[Label]:
        """One line."""
        yield Label("Connecting…")


class HubbubApp(App[int]):
    """The full-screen Hubbub client. `run()` returns 0 after quitting."""

    TITLE = "Hubbub"
    COMMAND_PALETTE_BINDING = "ctrl+k"

    def __init__(self, config: TuiConfig, *, autostart: bool = True) -> None:
        super().__init__()
        self.config = config
        self.autostart = autostart
        self.session: ChatSession | None = None

    def get_default_screen(self) -> Screen[None]:
        """The start screen (replaced by the login or the chat)."""
        return StartScreen()

    def on_mount(self) -> None:
        """Try the saved login, else ask for one."""
        if self.autostart:
            self.run_worker(self.start(), group="start")

    async def start(self) -> None:
        """Resume the saved session if valid for this server, else show the login screen."""
        saved = None
        if self.config.use_saved_session:
            saved = usable_saved_session(
                self.config.server, self.config.clock(), self.config.session_file
            )
        if saved is None:
            await self.push_screen(LoginScreen(self.config.server))
            return
        try:
            client = await self.config.connect()
        except HubbubError as exc:
            await self.push_screen(LoginScreen(self.config.server, render.sanitize(exc.message)))
            return
        client.token, client.username = saved.token, saved.username
        error = await self.enter_chat(client, None)
        if error:
            await self.push_screen(LoginScreen(self.config.server, error))

    async def log_in(self, username: str, password: str, *, keep: bool) -> str:
        """Log in from the login screen and open the chat; returns "" or an error line."""
        try:
            client = await self.config.connect()
        except HubbubError as exc:
            return render.sanitize(exc.message)
        try:
            result = await client.login(username, password)
        except HubbubError as exc:
            await client.close()
            return _login_error(username, exc)
        if keep and self.config.remember_login:
            remember(self.config.server, result, self.config.session_file)
        return await self.enter_chat(client, password)

    async def register(self, username: str, password: str, display_name: str, *, keep: bool) -> str:
        """Create the account, log in and open the chat; returns "" or an error line."""
        try:
            client = await self.config.connect()
        except HubbubError as exc:
            return render.sanitize(exc.message)
        try:
            await client.register(username, password, display_name)
            result = await client.login(username, password)
        except HubbubError as exc:
            await client.close()
            if exc.kind is ErrorKind.ALREADY_EXISTS:
                return f"Cannot create {render.sanitize(username)}: the name is already in use."
            return f"Cannot create the account: {render.sanitize(exc.detail())}"
        if keep and self.config.remember_login:
            remember(self.config.server, result, self.config.session_file)
        return await self.enter_chat(client, password)

    async def enter_chat(self, client: Client, password: str | None) -> str:
        """Open the chat stream on the logged-in `client` and show the chat screen.

        Returns "" or the error line (the client is then closed).
        """
        session = ChatSession(client, password)
        try:
            me = await session.start()
        except HubbubError as exc:
            await session.close()
            if exc.kind is ErrorKind.UNAUTHENTICATED:
                return "The saved login is no longer valid; log in again."
            if exc.kind is ErrorKind.ALREADY_EXISTS:
                return render.name_in_use(client.username or "")
            if exc.kind is ErrorKind.RESOURCE_EXHAUSTED:
                return render.SERVER_FULL
            return render.sanitize(exc.message)
        self.session = session
        state = ChatState(me.username, me.display_name)
        await self.show_chat(state, session)
        return ""

    async def show_chat(self, state: ChatState, session: ChatSession, *, live: bool = True) -> None:
        """Replace every screen by the chat screen of `state` (`live`: run `session`)."""
        screen = ChatScreen(
            state,
            session,
            server=self.config.server,
            clock=self.config.clock,
            tz=self.config.tz,
            live=live,
        )
        session.backoff.on_delay = screen.retry_in
        while len(self.screen_stack) > 1:
            await self.pop_screen()
        await self.push_screen(screen)

    async def session_ended(self, message: str) -> None:
        """The chat cannot go on (token refused, no password): back to the login screen."""
        if self.session is not None:
            await self.session.close()
            self.session = None
        while len(self.screen_stack) > 1:
            await self.pop_screen()
        await self.push_screen(
            LoginScreen(self.config.server, f"The session ended ({message}); log in again.")
        )

    async def action_quit(self) -> None:
        """Close the chat (pending acks reach the server) and leave."""
        if self.session is not None:
            await self.session.close()
            self.session = None
        self.exit(0)

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        """The command palette: the `!` commands and a switch to every conversation."""
        yield from super().get_system_commands(screen)
        if not isinstance(screen, ChatScreen):
            return
        chat = screen

        def fill(prefix: str) -> Callable[[], None]:
            def run() -> None:
                chat.input.value = prefix
                chat.input.cursor_position = len(prefix)
                chat.input.focus()

            return run

        def run_line(line: str) -> Callable[[], None]:
            return lambda: chat.submit(line)

        # The palette parses titles as markup: escape them (`[n]`, names with brackets).
        for name, (args, text) in render.COMMAND_HELP.items():
            if args:
                title = escape(f"{name} {args}")
                yield SystemCommand(title, text.capitalize(), fill(f"{name} "))
            else:
                yield SystemCommand(name, text.capitalize(), run_line(name))
        for conversation in chat.state.ordered():
            key = conversation.key
            sigil = "#" if key.kind == "group" else "@"
            title = escape(f"Open {sigil}{visible(conversation.title)}")
            yield SystemCommand(
                title, "Switch to this conversation", _opener(chat, key), discover=False
            )


def _opener(chat: ChatScreen, key: ConversationKey) -> Callable[[], None]:
    return lambda: chat.open(key)


def _login_error(username: str, exc: HubbubError) -> str:
    """The login screen's line for a failed Login (wording of the line-mode client)."""
    if exc.kind is ErrorKind.UNAUTHENTICATED:
        return "Wrong username or password (or no such account: use Create account)."
    if exc.kind is ErrorKind.INVALID_ARGUMENT:
        return render.name_disallowed(username)
    if exc.kind is ErrorKind.RESOURCE_EXHAUSTED:
        return f"Cannot log in as {render.sanitize(username)}: {render.sanitize(exc.message)}"
    return render.sanitize(exc.message)


def default_server(explicit: str | None) -> str:
    """`explicit` (--server / $HUBBUB_SERVER), else the saved login's server, else the default."""
    if explicit:
        return explicit
    with contextlib.suppress(SessionFileError):
        saved = load_session()
        if saved is not None:
            return saved.server
    return DEFAULT_SERVER


def run_tui(
    server: str | None,
    connect: Callable[[str], Awaitable[Client]],
    *,
    tz: tzinfo | None = None,
) -> int:
    """Run the full-screen client against `server` (None: the saved login's or the
    default); `connect(address)` returns an awaitable connected Client. Returns the
    exit status."""
    address = default_server(server)

    async def factory() -> Client:
        return await connect(address)

    app = HubbubApp(TuiConfig(address, factory, tz=tz))
    result = app.run()
    return result if isinstance(result, int) else 0


__all__ = ["HubbubApp", "TuiConfig", "run_tui"]
