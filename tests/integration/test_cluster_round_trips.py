"""Redis round trips of the send path on a PostgreSQL + Redis node: the sends of one
group commit are published together and their recipients' presence is looked up
together (docs/perf-notes.md "Cluster: Redis round trips")."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import pytest
from redis.asyncio.connection import AbstractConnection

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
    commits_before = store.group_commits
    round_trips.counting = True
    for i in range(SENDS):
        await chat.send("bob", f"hi {i}", f"c{i}")
    results = [(await chat.next("send_result")).send_result for _ in range(SENDS)]
    round_trips.counting = False
    commits = store.group_commits - commits_before
    assert sorted(r.sequence for r in results) == list(range(1, SENDS + 1))
    assert not any(r.recipient_online for r in results)
    assert commits < SENDS  # the sends were group-committed
    assert round_trips.count <= 2 * commits, (round_trips.count, commits)
