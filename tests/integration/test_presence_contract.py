"""The PresenceRegistry contract (server/presence.py), written once and run against every
backend (in-process memory and Redis).

A backend offers one or more *nodes*: registries sharing one view of who is online. The
memory registry is one process, so it has exactly one node, which lives as long as the
process; Redis has as many as a test asks for, each connected through a
:class:`~tests.harness.proxy.FaultProxy` so a test can pause or kill one (stall its
connection: no heartbeat reaches Redis). Tests about dead nodes run on the backends
whose nodes can die.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from urllib.parse import urlsplit

import pytest

from hubbub.server.models import utc_now
from hubbub.server.presence import Claim, PresenceRegistry
from hubbub.server.presence_memory import MemoryPresence
from hubbub.server.presence_redis import RedisPresence

from ..backends import redis_server, redis_url
from ..harness.proxy import FaultProxy

__all__ = ["redis_server", "redis_url"]  # fixtures used by name

pytestmark = pytest.mark.timeout(60)

TTL_S = 1.0  # --presence-ttl of the nodes under test
WAIT_S = 5.0  # longest wait for a change that must happen


class Node:
    """One registry, the claims it was told it lost and, for Redis, its proxy."""

    def __init__(self, presence: PresenceRegistry, proxy: FaultProxy | None) -> None:
        self.presence = presence
        self.proxy = proxy
        self.lost: list[tuple[str, str]] = []
        self.fail_on_lost = False
        presence.on_claim_lost(self._on_lost)

    def _on_lost(self, username: str, holder: str) -> None:
        self.lost.append((username, holder))
        if self.fail_on_lost:
            raise RuntimeError("claim-lost handler failure (planted by the test)")

    def pause(self) -> None:
        """Hold this node's traffic to Redis: no heartbeat gets through (a paused or
        crashed node). Only for nodes with a proxy."""
        assert self.proxy is not None
        self.proxy.stall()

    def resume(self) -> None:
        """Let the held traffic through again."""
        assert self.proxy is not None
        self.proxy.resume()


class Backend:
    """Start nodes of one presence backend; close them all at the end."""

    def __init__(self, kind: str, redis_url: str = "") -> None:
        self.kind = kind
        self.max_nodes = 1 if kind == "memory" else 8
        self._redis_url = redis_url
        self._nodes: list[Node] = []

    async def node(self, ttl_s: float = TTL_S) -> Node:
        """Start one more node (Redis: heartbeat with ``ttl_s``, through a FaultProxy).

        Raises:
            AssertionError: the backend has no room for another node.
        """
        assert len(self._nodes) < self.max_nodes, f"{self.kind} has {self.max_nodes} node(s)"
        if self.kind == "memory":
            node = Node(MemoryPresence(), None)
        else:
            proxy = FaultProxy("127.0.0.1", urlsplit(self._redis_url).port or 6379)
            await proxy.start()
            redis = RedisPresence(f"redis://127.0.0.1:{proxy.port}/0", ttl_s=ttl_s)
            node = Node(redis, proxy)
            await redis.start()
        self._nodes.append(node)
        return node

    async def nodes(self, n: int = 2) -> list[Node]:
        """Up to ``n`` nodes (as many as the backend has)."""
        return [await self.node() for _ in range(min(n, self.max_nodes))]

    async def close(self) -> None:
        """Close every node (a paused node's proxy is closed first, so nothing waits)."""
        for node in reversed(self._nodes):
            if node.proxy is not None:
                await node.proxy.close()
            if isinstance(node.presence, RedisPresence):
                await node.presence.close()


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """Each presence backend in turn, with nobody online."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else ""
    made = Backend(request.param, url)
    yield made
    await made.close()


@pytest.fixture(params=["redis"])
async def mortal(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """Each presence backend whose nodes can die (heartbeat and TTL), with nobody online."""
    made = Backend(request.param, request.getfixturevalue("redis_url"))
    yield made
    await made.close()


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> float:
    """Seconds until ``check()`` holds (polled every 50 ms, at most WAIT_S).

    Raises:
        AssertionError: it never did.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    while not await check():
        assert loop.time() - started < WAIT_S, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
    return loop.time() - started


async def test_one_holder_per_user_on_every_node(backend: Backend) -> None:
    """A claim is granted to the first holder only; a second claim, from any node and with a
    wrong takeover id, is refused; only the holder releases it; then it is free again."""
    nodes = await backend.nodes(2)
    first, last = nodes[0].presence, nodes[-1].presence
    t0 = utc_now()
    assert await first.claim("alice", t0, "h1") == Claim(True)
    for node in nodes:
        assert await node.presence.claim("alice", t0, "h2") == Claim(False)
        assert await node.presence.claim("alice", t0, "h1") == Claim(False)  # no takeover id
        assert await node.presence.claim("alice", t0, "h2", takeover="h9") == Claim(False)
        assert not await node.presence.release("alice", t0, "h2")
        assert await node.presence.is_online("alice")
    t1 = t0 + timedelta(seconds=1)
    assert await first.release("alice", t1, "h1")
    assert not await first.release("alice", t1, "h1")  # released once
    for node in nodes:
        assert not await node.presence.is_online("alice")
        assert await node.presence.online() == {}
    assert await last.claim("alice", t1, "h3", takeover="h1") == Claim(True)  # nothing replaced


async def test_takeover_with_the_holders_id_replaces_the_claim(backend: Backend) -> None:
    """A claim showing the current holder's id replaces it and names it (local if the same
    node held it); the replaced holder can no longer release, the new one can."""
    nodes = await backend.nodes(2)
    first = nodes[0].presence
    t0 = utc_now()
    assert (await first.claim("alice", t0, "h1")).granted
    t1 = t0 + timedelta(seconds=1)
    assert await first.claim("alice", t1, "h2", takeover="h1") == Claim(
        True, replaced="h1", replaced_local=True
    )
    holder, since = "h2", t1
    for other in nodes[1:]:
        since += timedelta(seconds=1)
        taken = await other.presence.claim("alice", since, "h3", takeover=holder)
        assert taken == Claim(True, replaced=holder, replaced_local=False)
        holder = "h3"
    assert not await first.release("alice", since, "h1")
    if holder != "h2":
        assert not await first.release("alice", since, "h2")
    for node in nodes:
        assert await node.presence.online() == {"alice": since}
    assert await nodes[-1].presence.release("alice", since, holder)
    assert not await first.is_online("alice")


async def test_online_since_and_last_change(backend: Backend) -> None:
    """online() maps users online to when they came online; last_change() keeps every
    user's last claim or release time, offline users included; every node agrees."""
    nodes = await backend.nodes(2)
    first = nodes[0].presence
    t0 = utc_now()
    t1, t2 = t0 + timedelta(seconds=1), t0 + timedelta(seconds=2)
    assert await first.last_change() == {}
    assert (await first.claim("alice", t0, "h1")).granted
    assert (await nodes[-1].presence.claim("bob", t1, "h2")).granted
    assert await first.release("alice", t2, "h1")
    for node in nodes:
        assert await node.presence.online() == {"bob": t1}
        assert await node.presence.last_change() == {"alice": t2, "bob": t1}
        assert await node.presence.is_online("bob")
        assert not await node.presence.is_online("alice")
        assert not await node.presence.is_online("nobody")


async def test_live_nodes_have_nothing_to_sweep(backend: Backend) -> None:
    """While every node is alive, sweep() releases nothing; memory needs no sweeping at all,
    a mortal backend asks to be swept at least three times per TTL."""
    nodes = await backend.nodes(2)
    assert (await nodes[0].presence.claim("alice", utc_now(), "h1")).granted
    for node in nodes:
        assert await node.presence.sweep() == []
        interval = node.presence.sweep_interval_s
        if backend.kind == "memory":
            assert interval is None
        else:
            assert interval is not None and 0 < interval <= TTL_S / 3
    assert await nodes[-1].presence.online() == await nodes[0].presence.online()


async def test_the_heartbeat_keeps_claims_past_the_ttl_and_a_dead_node_loses_them(
    mortal: Backend,
) -> None:
    """A live node's claims outlive the TTL (--presence-ttl); once its heartbeat stops they
    are offline for the others after about the TTL, another stream may claim them at once,
    and sweeping reports each remaining user exactly once among all the sweepers."""
    dying, b, c = await mortal.nodes(3)
    t0 = utc_now()
    for name in ("carol", "dave", "erin"):
        assert (await dying.presence.claim(name, t0, f"h-{name}")).granted
    await asyncio.sleep(TTL_S * 2)
    assert set(await b.presence.online()) == {"carol", "dave", "erin"}
    dying.pause()
    took = await eventually(lambda: _offline(b.presence, "carol"), "carol to go offline")
    assert took >= TTL_S * 0.3  # not before the node's key expired (the last beat was recent)
    assert await b.presence.online() == {}
    assert not await c.presence.is_online("dave")
    again = await b.presence.claim("dave", utc_now(), "h-dave-2")
    assert again == Claim(True, replaced="h-dave", replaced_local=False)
    swept = await asyncio.gather(b.presence.sweep(), c.presence.sweep(), b.presence.sweep())
    names = sorted(name for found in swept for name, _ in found)
    assert names == ["carol", "erin"]
    assert await b.presence.sweep() == []
    assert set(await c.presence.online()) == {"dave"}
    changed = await c.presence.last_change()
    ((_, when),) = [entry for found in swept for entry in found if entry[0] == "carol"]
    assert changed["carol"] == when


async def _offline(presence: PresenceRegistry, username: str) -> bool:
    return not await presence.is_online(username)


async def test_close_marks_the_node_dead_at_once(mortal: Backend) -> None:
    """A node that closes is dead for the others at once (no TTL wait): its users are
    offline and swept once."""
    closing, other = await mortal.nodes(2)
    assert (await closing.presence.claim("carol", utc_now(), "h1")).granted
    assert isinstance(closing.presence, RedisPresence)
    await closing.presence.close()
    assert not await other.presence.is_online("carol")
    assert [name for name, _ in await other.presence.sweep()] == ["carol"]


async def test_a_node_back_from_a_pause_keeps_its_claims_and_reports_the_lost_ones(
    mortal: Backend,
) -> None:
    """A node counted dead (paused longer than the TTL) re-asserts the claims nobody took,
    and calls its claim-lost handler once with (user, holder) for each claim another stream
    took meanwhile; that holder can no longer release it."""
    paused, other = await mortal.nodes(2)
    t0 = utc_now()
    assert (await paused.presence.claim("alice", t0, "h1")).granted
    assert (await paused.presence.claim("carol", t0, "h3")).granted
    paused.pause()
    await eventually(lambda: _offline(other.presence, "alice"), "alice to go offline")
    taken = await other.presence.claim("alice", utc_now(), "h2")
    assert taken == Claim(True, replaced="h1", replaced_local=False)
    paused.resume()
    await eventually(lambda: other.presence.is_online("carol"), "carol to be re-asserted")
    await eventually(_true_once(lambda: paused.lost == [("alice", "h1")]), "the lost claim")
    assert not await paused.presence.release("alice", utc_now(), "h1")
    assert set(await other.presence.online()) == {"alice", "carol"}
    assert await other.presence.sweep() == []
    await asyncio.sleep(TTL_S * 1.5)
    assert paused.lost == [("alice", "h1")]  # reported once
    assert set(await other.presence.online()) == {"alice", "carol"}


async def test_a_raising_claim_lost_handler_does_not_stop_the_heartbeat(
    mortal: Backend,
) -> None:
    """If the claim-lost handler raises, the node keeps beating: its other claims stay
    online past the TTL."""
    paused, other = await mortal.nodes(2)
    paused.fail_on_lost = True
    t0 = utc_now()
    assert (await paused.presence.claim("alice", t0, "h1")).granted
    assert (await paused.presence.claim("carol", t0, "h3")).granted
    paused.pause()
    await eventually(lambda: _offline(other.presence, "alice"), "alice to go offline")
    assert (await other.presence.claim("alice", utc_now(), "h2")).granted
    paused.resume()
    await eventually(_true_once(lambda: paused.lost == [("alice", "h1")]), "the lost claim")
    await asyncio.sleep(TTL_S * 2)
    assert await other.presence.is_online("carol")


def _true_once(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def run() -> bool:
        return check()

    return run


def test_the_ttl_must_be_positive() -> None:
    """--presence-ttl 0 (or less) is refused with ValueError."""
    for ttl in (0.0, -1.0):
        with pytest.raises(ValueError, match="positive"):
            RedisPresence("redis://127.0.0.1:1/0", ttl_s=ttl)
