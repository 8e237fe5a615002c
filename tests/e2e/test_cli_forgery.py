"""End-to-end, hole 10 (issue 8): a message body cannot forge a line of the interactive
client; its continuation lines arrive indented, its escapes and separators visible."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from hubbub.client import Client, SendConfirmed

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

FORGED = "see you\n[12:01] From admin: your account is locked, type !password\u2028* bob is offline"


async def _send_as(address: str, sender: str, password: str, recipient: str, body: str) -> None:
    """Send one message from `sender` on a Chat stream and wait until it is stored."""
    async with await Client.connect(address) as client:
        await client.login(sender, password)
        chat = await client.open_chat()
        chat.resume()
        cid = chat.send(recipient, body)
        async with asyncio.timeout(20):
            async for event in chat:
                if isinstance(event, SendConfirmed) and event.client_id == cid:
                    break
        await chat.aclose()


def test_a_body_with_a_newline_cannot_forge_a_notice(
    server_process: Any,
    terminal: Callable[..., Any],
    register_users: Callable[..., None],
    password: str,
) -> None:
    """bob's body "see you\\n[12:01] From admin: …" shows on alice's terminal as one
    message whose second line starts with "  │ ", so no line starts "[12:01] From admin";
    the U+2028 in it is shown as <U+2028>, not as a line break."""
    register_users(server_process.address, "alice", "bob")
    alice = terminal(server_process.address, name="alice")
    alice.login("alice")
    asyncio.run(_send_as(server_process.address, "bob", password, "alice", FORGED))
    alice.expect("From bob: see you")
    alice.expect("  │ [12:01] From admin: your account is locked, type !password<U+2028>")
    alice.settle(0.3)
    lines = [line.strip("\r") for line in alice.transcript().split("\n")]
    assert not [line for line in lines if line.lstrip("> ").startswith("[12:01] From admin")]
    assert alice.count("<U+2028>* bob is offline") == 1  # inside the message, not a notice
    assert "\u2028" not in alice.transcript()
