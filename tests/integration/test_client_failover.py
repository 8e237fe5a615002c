"""Integration (issue 9 item 4, client side): a Conversation given the addresses of two
nodes (PostgreSQL + Redis) moves to the live node when its node stops, and shows every
message exactly once, in order."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable

import pytest

from hubbub.client import (
    Client,
    ConnectionLost,
    Conversation,
    IncomingMessage,
    Reconnected,
)
from hubbub.client.backoff import Backoff
from hubbub.server.config import ServerConfig

from ..backends import postgres_server, postgres_url, redis_server, redis_url
from ..harness.server_process import ServerProcess
from .conftest import PASSWORD, close_node, open_node

__all__ = ["postgres_server", "postgres_url", "redis_server", "redis_url"]  # fixtures by name

pytestmark = pytest.mark.timeout(90)


async def test_conversation_fails_over_to_the_other_node(postgres_url: str, redis_url: str) -> None:
    """bob's Conversation on node A (addresses "A,B"): A stops; bob reconnects to B within
    a few seconds and gets all 20 of alice's messages (sent via B) once, in order."""

    def config() -> ServerConfig:
        return ServerConfig(
            host="127.0.0.1", port=0, database="", grace_s=1.0,
            postgres_url=postgres_url, redis_url=redis_url, presence_ttl_s=1.0,
        )  # fmt: skip

    node_a, node_b = await open_node(config()), await open_node(config())
    a_address, b_address = node_a.address, node_b.address
    stopped_a = False
    try:
        async with Client(b_address) as setup:
            for name in ("alice", "bob"):
                await setup.register(name, PASSWORD)
        bob = Client(f"{a_address},{b_address}")
        await bob.login("bob", PASSWORD)
        conversation = Conversation(bob, password=PASSWORD, backoff=Backoff(base=0.05, cap=0.5))
        await conversation.start()
        assert bob.address == a_address

        alice = Client(b_address)
        await alice.login("alice", PASSWORD)
        sender = Conversation(alice, password=PASSWORD)
        await sender.start()

        shown: list[str] = []
        events: list[object] = []

        async def read(count: int) -> None:
            async for event in conversation:
                events.append(event)
                if isinstance(event, IncomingMessage):
                    shown.append(event.body)
                    conversation.ack(event.sequence)
                    if len(shown) == count:
                        return

        for i in range(10):
            sender.send("bob", f"m{i}")
        await asyncio.wait_for(read(10), 15)

        await close_node(node_a)
        stopped_a = True
        died = time.monotonic()
        for i in range(10, 20):
            sender.send("bob", f"m{i}")
        await asyncio.wait_for(read(20), 30)
        back = next(e for e in events if isinstance(e, Reconnected))
        assert back is not None and bob.address == b_address
        assert any(isinstance(e, ConnectionLost) for e in events)
        print(f"failover: delivering again {time.monotonic() - died:.2f} s after node A stopped")
        assert shown == [f"m{i}" for i in range(20)]
        await sender.close()
        await conversation.close()
        await alice.close()
        await bob.close()
    finally:
        if not stopped_a:
            await close_node(node_a)
        await close_node(node_b)


async def test_conversation_takes_its_session_over_on_another_node_after_kill_9(
    postgres_url: str, redis_url: str, server_factory: Callable[..., ServerProcess]
) -> None:
    """Node A is killed (SIGKILL, its presence claim left behind): bob's Conversation
    reconnects to B with its resume token, takes its own stale session over at once
    (no ALREADY_EXISTS wait for the claim to expire), and shows all 20 messages once."""
    flags = ("--postgres-url", postgres_url, "--redis-url", redis_url)
    node_a, node_b = server_factory(*flags), server_factory(*flags)
    async with Client(node_b.address) as setup:
        for name in ("alice", "bob"):
            await setup.register(name, PASSWORD)
    bob = Client(f"{node_a.address},{node_b.address}")
    await bob.login("bob", PASSWORD)
    conversation = Conversation(bob, password=PASSWORD, backoff=Backoff(base=0.05, cap=0.5))
    await conversation.start()
    assert conversation.resume_token, "the server sends a resume token in Welcome"
    alice = Client(node_b.address)
    await alice.login("alice", PASSWORD)
    sender = Conversation(alice, password=PASSWORD)
    await sender.start()
    shown: list[str] = []

    async def read(count: int) -> None:
        async for event in conversation:
            if isinstance(event, IncomingMessage):
                shown.append(event.body)
                conversation.ack(event.sequence)
                if len(shown) == count:
                    return

    try:
        for i in range(10):
            sender.send("bob", f"m{i}")
        await asyncio.wait_for(read(10), 15)
        node_a.stop(signal.SIGKILL)
        died = time.monotonic()
        for i in range(10, 20):
            sender.send("bob", f"m{i}")
        await asyncio.wait_for(read(20), 45)
        took = time.monotonic() - died
        print(f"failover after kill -9: delivering again {took:.2f} s after node A died")
        assert shown == [f"m{i}" for i in range(20)]
        assert bob.address == node_b.address
    finally:
        await sender.close()
        await conversation.close()
        await alice.close()
        await bob.close()
