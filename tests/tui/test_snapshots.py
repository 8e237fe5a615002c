"""Snapshot tests (pytest-textual-snapshot) of the main screens, from fixed data: fixed
times shown in UTC, a fixed terminal size, no network. Update with `--snapshot-update`
after checking the new SVG by eye."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Input

from hubbub.client.tui.app import HubbubApp, TuiConfig
from hubbub.client.tui.chat_screen import ChatScreen
from hubbub.client.tui.login_screens import RegisterScreen

from .demo import SERVER, clock, demo_app, show

pytestmark = pytest.mark.timeout(60)

SIZE = (100, 28)


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch) -> None:
    """TZ=UTC for anything that asks the process for its local zone."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


def _steady(pilot: Pilot[Any]) -> None:
    """No blinking cursor in a snapshot."""
    for field in pilot.app.screen.query(Input):
        field.cursor_blink = False


def _login_app(tmp_path: Path) -> HubbubApp:
    async def connect() -> object:
        raise AssertionError("the snapshot does not connect")

    config = TuiConfig(
        SERVER, connect, session_file=tmp_path / "none.json", use_saved_session=False,  # type: ignore[arg-type]
        clock=clock,
    )  # fmt: skip
    return HubbubApp(config)


def test_login_screen(snap_compare: Callable[..., bool], tmp_path: Path) -> None:
    """The login screen: server, username, password, keep-me-logged-in, two buttons."""

    async def before(pilot: Pilot[Any]) -> None:
        await pilot.pause(0.2)
        _steady(pilot)

    assert snap_compare(_login_app(tmp_path), terminal_size=SIZE, run_before=before)


def test_account_screen(snap_compare: Callable[..., bool], tmp_path: Path) -> None:
    """The account creation screen with the password asked twice."""
    app = _login_app(tmp_path)

    async def before(pilot: Pilot[Any]) -> None:
        await pilot.pause(0.2)
        await app.push_screen(RegisterScreen(SERVER, "newbie"))
        await pilot.pause(0.1)
        _steady(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_chat_screen(snap_compare: Callable[..., bool], tmp_path: Path) -> None:
    """The chat: sidebar by last activity with presence and unread counts, day separators,
    the new-messages marker, a ✓ on a delivered message, an unsent one, a notice."""
    app, state = demo_app(tmp_path)

    async def before(pilot: Pilot[Any]) -> None:
        await show(app, state)
        chat = app.screen
        assert isinstance(chat, ChatScreen)
        chat.notice = Text("✉ new message from dave in #team", style="bold")
        chat.redraw()
        await pilot.pause(0.1)
        _steady(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_chat_screen_reconnecting_with_help(
    snap_compare: Callable[..., bool], tmp_path: Path
) -> None:
    """Reconnecting in the status bar; !help answered in the open conversation."""
    app, state = demo_app(tmp_path)

    async def before(pilot: Pilot[Any]) -> None:
        await show(app, state)
        chat = app.screen
        assert isinstance(chat, ChatScreen)
        chat.connection = "◌ reconnecting…"
        chat.submit("!help")
        await pilot.pause(0.1)
        _steady(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)
