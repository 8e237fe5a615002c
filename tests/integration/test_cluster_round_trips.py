"""Redis round trips of the send path on a PostgreSQL + Redis node: the sends of one
group commit are published together and their recipients' presence is looked up
together (docs/perf-notes.md "Cluster: Redis round trips")."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection

from hubbub.server.broker_redis import RedisBroker
from hubbub.server.models import PresenceChange, SessionEvent, StoredMessage, utc_now
from hubbub.server.store_postgres import PostgresStore

from ..backends import postgres_server, postgres_url, redis_server, redis_url
from .conftest import Node, open_chat, register_login

__all__ = ["postgres_server", "postgres_url", "redis_server", "redis_url"]  # fixtures by name

pytestmark = pytest.mark.timeout(60)

SENDS = 60


class _RoundTrips:
    """Counts the writes of packed commands to Redis (one per command, one per pipeline)
    that carry a PUBLISH or an EVALSHA (the send path's publish and presence lookup)."""

    def __init__(self) -> None:
        self.count = 0
        self.counting = False

    def seen(self, command: bytes | str | Iterable[bytes]) -> None:
        """Count ``command`` if counting and it is a publish or a script call."""
        if not self.counting:
            return
        if isinstance(command, str):
            data = command.encode()
        elif isinstance(command, bytes):
            data = command
        else:
            data = b"".join(command)
        if b"PUBLISH" in data or b"EVALSHA" in data:
            self.count += 1


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> _RoundTrips:
    """A counter of the send path's Redis round trips of every client in this process."""
    trips = _RoundTrips()
    original = AbstractConnection.send_packed_command

    async def counted(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        trips.seen(command)
        await original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    return trips


async def test_sends_of_a_group_commit_share_their_redis_round_trips(
    node_factory: Callable[..., Awaitable[Node]],
    postgres_url: str,
    redis_url: str,
    round_trips: _RoundTrips,
) -> None:
    """60 sends to an offline user cost at most 2 Redis round trips per group commit (one
    pipelined publish, one presence lookup), not 2 per send; each is answered offline."""
    node = await node_factory(postgres_url=postgres_url, redis_url=redis_url)
    store = node.server.store
    assert isinstance(store, PostgresStore)
    alice = await register_login(node, "alice")
    await register_login(node, "bob")  # never connects: offline
    chat = await open_chat(node, alice)
    await chat.send("bob", "warm-up", "warm-up")  # loads the Lua scripts (NOSCRIPT retry)
    await chat.next("send_result")
    commits_before = store.group_commits
    round_trips.counting = True
    for i in range(SENDS):
        await chat.send("bob", f"hi {i}", f"c{i}")
    results = [(await chat.next("send_result")).send_result for _ in range(SENDS)]
    round_trips.counting = False
    commits = store.group_commits - commits_before
    assert sorted(r.sequence for r in results) == list(range(2, SENDS + 2))
    assert not any(r.recipient_online for r in results)
    assert commits < SENDS  # the sends were group-committed
    assert round_trips.count <= 2 * commits, (round_trips.count, commits)


class _Count:
    """A broker handler that counts the messages it is given."""

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


async def _publish_calls(client: aioredis.Redis) -> int:
    stats = await client.info("commandstats")
    entry = stats.get("cmdstat_publish", {})
    return int(entry.get("calls", 0)) if isinstance(entry, dict) else 0


async def test_a_batch_of_messages_is_one_publish_per_size_chunk(redis_url: str) -> None:
    """publish_messages sends 40 small messages as ONE Redis PUBLISH (every node decodes
    one event per batch, not one per message), and 40 messages of 64 KiB as several
    PUBLISHes of at most PUBLISH_CHUNK_CHARS each; subscribers get all, in order."""
    broker = RedisBroker(redis_url)
    admin = aioredis.from_url(redis_url)
    small = [_message(i, "x" * 10) for i in range(1, 41)]
    big = [_message(i, "y" * 65536) for i in range(41, 81)]
    try:
        handler = _Count(len(small) + len(big))
        await broker.start(handler)
        before = await _publish_calls(admin)
        await broker.publish_messages(small)
        small_calls = await _publish_calls(admin) - before
        await broker.publish_messages(big)
        big_calls = await _publish_calls(admin) - before - small_calls
        async with asyncio.timeout(10):
            await handler.all_in.wait()
    finally:
        await broker.aclose()
        await admin.aclose()
    assert small_calls == 1
    assert 2 <= big_calls < len(big)
    assert handler.messages == small + big


def _message(sequence: int, body: str) -> StoredMessage:
    return StoredMessage(
        sequence=sequence,
        message_id=sequence,
        sender="alice",
        sender_display_name="Alice",
        recipient="bob",
        body=body,
        sent_at=utc_now(),
        client_id=f"c{sequence}",
    )
