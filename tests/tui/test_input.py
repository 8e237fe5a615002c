"""Pilot tests of the input line on the demo chat (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.content import Content

from hubbub.client.tui.chat_screen import ChatScreen
from hubbub.client.tui.conversations import ConversationKey

from .demo import demo_app, show

pytestmark = pytest.mark.timeout(60)

SIZE = (100, 28)


async def test_up_recalls_typed_lines(tmp_path: Path) -> None:
    """↑ in the input line brings back the lines typed before, ↓ goes forward again."""
    app, state = demo_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await show(app, state)
        chat = app.screen
        assert isinstance(chat, ChatScreen)
        for line in ("!help", "!bogus"):
            chat.input.value = line
            await pilot.press("enter")
        assert chat.input.value == ""
        await pilot.press("up")
        assert chat.input.value == "!bogus"
        await pilot.press("up", "up")
        assert chat.input.value == "!help"
        await pilot.press("down", "down")
        assert chat.input.value == ""


async def test_palette_titles_are_not_markup(tmp_path: Path) -> None:
    """The command palette shows its titles literally (the palette parses titles as
    markup): `!history … [n]` keeps its `[n]`, a name with brackets is not styled."""
    app, state = demo_app(tmp_path)
    state.conversation(ConversationKey.group("[b]x[/b]"), "[b]x[/b]")
    async with app.run_test(size=SIZE) as pilot:
        await show(app, state)
        await pilot.pause(0.1)
        shown = {Content.from_markup(c.title).plain for c in app.get_system_commands(app.screen)}
        assert "!history @<user>|#<group> [n]" in shown
        assert "Open #[b]x[/b]" in shown
