"""Integration (issue 9 item 3): a client library Conversation that had shown sequence 7
keeps showing new messages after its server is restored from a backup taken at
sequence 3: the next 4 messages (sequences 4-7 again) are all shown, none skipped."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hubbub.client import Client, Conversation, IncomingMessage
from hubbub.client.backoff import Backoff
from hubbub.server import backup as bk
from hubbub.server.config import ServerConfig

from .conftest import PASSWORD, Node, close_node, open_node

pytestmark = pytest.mark.timeout(60)


async def _node(database: Path, port: int = 0) -> Node:
    return await open_node(
        ServerConfig(host="127.0.0.1", port=port, database=str(database), grace_s=1.0)
    )


async def _send(address: str, bodies: list[str]) -> None:
    """alice sends each body to bob and waits until each is stored."""
    async with Client(address) as client:
        await client.login("alice", PASSWORD)
        conversation = Conversation(client, password=PASSWORD)
        await conversation.start()
        for body in bodies:
            conversation.send("bob", body)
        async for _ in conversation:
            if not conversation.pending:
                break
        await conversation.close()


async def _shown(conversation: Conversation, count: int, shown: list[IncomingMessage]) -> None:
    """Read until `count` more messages were shown (and acknowledged)."""
    target = len(shown) + count
    async for event in conversation:
        if isinstance(event, IncomingMessage):
            shown.append(event)
            conversation.ack(event.sequence)
            if len(shown) == target:
                return


async def test_restore_to_an_older_backup_never_hides_new_messages(tmp_path: Path) -> None:
    """Shown 7, server restored at 3, 4 new messages sent: all 4 are shown."""
    database = tmp_path / "hubbub.db"
    node = await _node(database)
    port = node.server.port
    address = f"127.0.0.1:{port}"
    async with Client(address) as setup:
        for name in ("alice", "bob"):
            await setup.register(name, PASSWORD)

    bob = Client(address)
    await bob.login("bob", PASSWORD)
    conversation = Conversation(bob, password=PASSWORD, backoff=Backoff(base=0.05, cap=0.2))
    await conversation.start()
    shown: list[IncomingMessage] = []
    try:
        await _send(address, [f"old-{i}" for i in range(1, 4)])
        await asyncio.wait_for(_shown(conversation, 3, shown), 15)
        await asyncio.sleep(0.5)  # let bob's acks of 1-3 be committed before the backup
        backup = tmp_path / "at-3.bak"
        bk.backup_database(database, backup)
        await _send(address, [f"old-{i}" for i in range(4, 8)])
        await asyncio.wait_for(_shown(conversation, 4, shown), 15)
        assert [m.sequence for m in shown] == list(range(1, 8))

        await close_node(node)
        bk.restore_database(backup, database)
        node = await _node(database, port)
        await _send(address, [f"new-{i}" for i in range(1, 5)])
        await asyncio.wait_for(_shown(conversation, 4, shown), 20)
        assert [m.body for m in shown[7:]] == ["new-1", "new-2", "new-3", "new-4"]
    finally:
        await conversation.close()
        await bob.close()
        await close_node(node)
