"""Pilot tests of `hubbub tui` (HubbubApp.run_test) against the real server in-process."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hubbub.client.tui.app import HubbubApp
from hubbub.client.tui.model import ConversationKey
from tests.integration.conftest import Node

from .conftest import (
    SIZE,
    library_user,
    log_in,
    next_message,
    quit_app,
    register,
    type_line,
    until,
)

pytestmark = pytest.mark.timeout(60)


async def test_two_users_chat_both_ways(node: Node, app_factory: Callable[..., HubbubApp]) -> None:
    """alice in the TUI and bob through the library exchange messages; bob's ack puts a ✓
    on alice's message, and each message appears once."""
    await register(node.address, "alice", "bob")
    bob_client, bob = await library_user(node.address, "bob")
    app = app_factory(node.address)
    async with app.run_test(size=SIZE) as pilot:
        chat = await log_in(pilot, "alice")
        await type_line(pilot, "@bob hello bob")
        got = await next_message(bob)
        assert (got.sender, got.body) == ("alice", "hello bob")
        bob.send("alice", "hi alice")
        await until(pilot, lambda: any("bob: hi alice" in line for line in chat.pane.plain_lines()))
        await until(
            pilot, lambda: any("alice: hello bob ✓" in line for line in chat.pane.plain_lines())
        )
        lines = chat.pane.plain_lines()
        assert sum("hi alice" in line for line in lines) == 1
        assert sum("hello bob" in line for line in lines) == 1
        assert chat.state.active == ConversationKey.user("bob")
        await quit_app(app)
    await bob.close()
    await bob_client.close()
