"""Fixtures of the full-screen client tests: the real server in-process (port 0, temp
database, from tests/integration), apps wired to it, and polling helpers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC
from pathlib import Path

import pytest
from textual.pilot import Pilot

from hubbub.client import Client, Conversation, IncomingMessage
from hubbub.client.tui.app import HubbubApp, TuiConfig
from hubbub.client.tui.screens import ChatScreen
from tests.integration.conftest import PASSWORD, db_path, node, node_factory

__all__ = ["PASSWORD", "db_path", "node", "node_factory"]

SIZE = (110, 32)


def make_app(address: str, session_file: Path, **overrides: object) -> HubbubApp:
    """A HubbubApp for the server at `address`, times in UTC, its own session file."""

    async def connect() -> Client:
        return await Client.connect(address)

    config = TuiConfig(address, connect, session_file=session_file, tz=UTC, **overrides)  # type: ignore[arg-type]
    return HubbubApp(config)


@pytest.fixture
def app_factory(tmp_path: Path) -> Callable[..., HubbubApp]:
    """Apps against a server address, each with a session file under tmp_path."""

    def make(address: str, name: str = "session", **overrides: object) -> HubbubApp:
        return make_app(address, tmp_path / f"{name}.json", **overrides)

    return make


async def register(address: str, *names: str, display_names: dict[str, str] | None = None) -> None:
    """Create the accounts `names` (password PASSWORD) through the client library."""
    async with await Client.connect(address) as client:
        for name in names:
            await client.register(name, PASSWORD, (display_names or {}).get(name, ""))


async def until(
    pilot: Pilot[object], predicate: Callable[[], object], within: float = 20.0
) -> None:
    """Let the app run until `predicate()` is true; fails after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await pilot.pause(0.05)


def chat_of(app: HubbubApp) -> ChatScreen:
    """The chat screen (asserts it is showing)."""
    screen = app.screen
    assert isinstance(screen, ChatScreen), type(screen).__name__
    return screen


async def log_in(pilot: Pilot[object], username: str, password: str = PASSWORD) -> ChatScreen:
    """Fill in the login screen and wait for the chat screen with its conversations."""
    app = pilot.app
    assert isinstance(app, HubbubApp)
    await until(pilot, lambda: app.screen.query("#username"))
    await pilot.click("#username")
    await pilot.press(*username)
    await pilot.click("#password")
    await pilot.press(*password, "enter")
    await until(pilot, lambda: isinstance(app.screen, ChatScreen))
    return chat_of(app)


async def type_line(pilot: Pilot[object], line: str) -> None:
    """Type `line` into the chat input and press Enter."""
    chat = chat_of(pilot.app)  # type: ignore[arg-type]
    chat.input.focus()
    chat.input.value = line
    await pilot.press("enter")


async def next_message(conversation: Conversation, within: float = 20.0) -> IncomingMessage:
    """The next message the library-side user receives (acknowledged)."""

    async def wait() -> IncomingMessage:
        async for event in conversation:
            if isinstance(event, IncomingMessage):
                conversation.ack(event.sequence)
                return event
        raise AssertionError("the chat ended")

    return await asyncio.wait_for(wait(), within)


async def library_user(address: str, name: str) -> tuple[Client, Conversation]:
    """`name` logged in through the library with a live chat."""
    client = await Client.connect(address)
    await client.login(name, PASSWORD)
    conversation = Conversation(client, password=PASSWORD)
    await conversation.start()
    return client, conversation


async def quit_app(app: HubbubApp) -> None:
    """Leave the app the way !quit does (closes the chat)."""
    await app.action_quit()


def screen_text(app: HubbubApp) -> str:
    """The whole screen as plain text, one line per row (for assertions and dumps)."""
    strips = app.screen._compositor.render_strips()
    return "\n".join(strip.text.rstrip() for strip in strips)
