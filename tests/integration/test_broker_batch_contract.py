"""The batch methods of the broker and presence interfaces (``Broker.publish_messages``,
``PresenceRegistry.is_online_many``), written once and run on the memory and Redis
backends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from hubbub.server.broker import Broker
from hubbub.server.broker_memory import MemoryBroker
from hubbub.server.broker_redis import RedisBroker
from hubbub.server.models import (
    PresenceChange,
    SessionEvent,
    StoredMessage,
    utc_now,
)
from hubbub.server.presence import PresenceRegistry
from hubbub.server.presence_memory import MemoryPresence
from hubbub.server.presence_redis import RedisPresence

from ..backends import redis_server, redis_url

__all__ = ["redis_server", "redis_url"]  # fixtures by name

pytestmark = pytest.mark.timeout(60)

BACKENDS = ["memory", "redis"]


class _Messages:
    """A broker handler that records the messages it is given."""

    def __init__(self, expected: int) -> None:
        self.messages: list[StoredMessage] = []
        self.expected = expected
        self.all_in = asyncio.Event()

    def on_message(self, message: StoredMessage) -> None:
        """Record one message; set ``all_in`` at the expected count."""
        self.messages.append(message)
        if len(self.messages) >= self.expected:
            self.all_in.set()

    def on_presence(self, change: PresenceChange) -> None:
        """Not expected here."""

    def on_session_event(self, event: SessionEvent) -> None:
        """Not expected here."""

    def on_resubscribed(self) -> None:
        """Not expected here."""


def _message(sequence: int, recipient: str) -> StoredMessage:
    return StoredMessage(
        sequence=sequence,
        message_id=100 + sequence,
        sender="alice",
        sender_display_name="Alice",
        recipient=recipient,
        body=f"body {sequence}",
        sent_at=utc_now(),
        client_id=f"c{sequence}",
    )


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest) -> str:
    """'' for the memory backends, else a flushed throw-away Redis URL (requested only
    for Redis, so the memory run needs no Redis server)."""
    if request.param == "memory":
        return ""
    url: str = request.getfixturevalue("redis_url")
    return url


@pytest.fixture
async def broker(backend_url: str) -> AsyncIterator[Broker]:
    """A broker of the backend under test (not started)."""
    if not backend_url:
        yield MemoryBroker()
        return
    redis_broker = RedisBroker(backend_url)
    try:
        yield redis_broker
    finally:
        await redis_broker.aclose()


@pytest.fixture
async def presence(backend_url: str) -> AsyncIterator[PresenceRegistry]:
    """A started presence registry of the backend under test."""
    if not backend_url:
        yield MemoryPresence()
        return
    registry = RedisPresence(backend_url, ttl_s=5.0)
    await registry.start()
    try:
        yield registry
    finally:
        await registry.close()


async def test_publish_messages_delivers_every_message_in_order(broker: Broker) -> None:
    """publish_messages hands each message to the handler once, in the order given."""
    sent = [_message(i, "bob" if i % 2 else "carol") for i in range(1, 41)]
    handler = _Messages(len(sent))
    await broker.start(handler)
    await broker.publish_messages(sent)
    async with asyncio.timeout(10):
        await handler.all_in.wait()
    await asyncio.sleep(0.1)  # nothing more arrives
    assert handler.messages == sent


async def test_publish_messages_of_nothing_delivers_nothing(broker: Broker) -> None:
    """publish_messages([]) delivers nothing; a later publish still arrives alone."""
    handler = _Messages(1)
    await broker.start(handler)
    await broker.publish_messages([])
    await broker.publish_messages([_message(7, "bob")])
    async with asyncio.timeout(10):
        await handler.all_in.wait()
    await asyncio.sleep(0.1)
    assert [m.sequence for m in handler.messages] == [7]


async def test_is_online_many_answers_as_is_online_does(presence: PresenceRegistry) -> None:
    """is_online_many returns exactly the names is_online reports online (duplicates too)."""
    now = utc_now()
    assert (await presence.claim("alice", now, "h-alice")).granted
    assert (await presence.claim("bob", now, "h-bob")).granted
    assert await presence.release("bob", now, "h-bob")
    names = ["alice", "bob", "carol", "alice"]
    expected = {name for name in names if await presence.is_online(name)}
    assert expected == {"alice"}
    assert await presence.is_online_many(names) == expected
    assert await presence.is_online_many([]) == set()
    assert await presence.is_online_many(["carol"]) == set()
