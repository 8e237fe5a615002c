"""The Broker contract (server/broker.py), written once and run against every backend
(in-process memory and Redis pub/sub).

A backend offers one or more *nodes*: brokers started on the same bus, each with its own
handler. The memory broker is one process, so it has exactly one node; Redis has as many as
a test asks for. Tests that need a lost connection run on the backends that have one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any, TypeAlias
from urllib.parse import urlsplit

import pytest

from hubbub.server.broker import Broker
from hubbub.server.broker_memory import MemoryBroker
from hubbub.server.broker_redis import RedisBroker
from hubbub.server.models import (
    EntryKind,
    GroupAction,
    PresenceChange,
    SessionEvent,
    SessionEventKind,
    StoredMessage,
    UserView,
    utc_now,
)

from ..backends import redis_server, redis_url
from ..harness.proxy import FaultProxy

__all__ = ["redis_server", "redis_url"]  # fixtures used by name

pytestmark = pytest.mark.timeout(60)

WAIT_S = 5.0  # longest wait for an event that must arrive

Event: TypeAlias = StoredMessage | PresenceChange | SessionEvent


class Recorder:
    """A :class:`~hubbub.server.broker.BrokerHandler` that records what it is handed.

    Args:
        fail_first: raise RuntimeError from the first call of these callbacks
            (``"message"``, ``"presence"``, ``"session"``, ``"resubscribed"``); the call is
            still recorded.
    """

    def __init__(self, *fail_first: str) -> None:
        self.events: list[Event] = []
        self.resubscribed = 0
        self._fail = set(fail_first)
        self._changed = asyncio.Event()

    def _record(self, kind: str, event: Event | None) -> None:
        if event is not None:
            self.events.append(event)
        self._changed.set()
        if kind in self._fail:
            self._fail.discard(kind)
            raise RuntimeError(f"handler failure in on_{kind} (planted by the test)")

    def on_message(self, message: StoredMessage) -> None:
        """Record a message."""
        self._record("message", message)

    def on_presence(self, change: PresenceChange) -> None:
        """Record a presence change."""
        self._record("presence", change)

    def on_session_event(self, event: SessionEvent) -> None:
        """Record a session event."""
        self._record("session", event)

    def on_resubscribed(self) -> None:
        """Count a resubscription."""
        self.resubscribed += 1
        self._record("resubscribed", None)

    async def until(self, done: Callable[[], bool], what: str) -> None:
        """Wait up to WAIT_S for ``done()`` to hold.

        Raises:
            AssertionError: it did not (the message says ``what`` was awaited).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_S
        while not done() and loop.time() < deadline:
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), deadline - loop.time())
        assert done(), f"timed out waiting for {what}; recorded {self.events!r}"

    async def count(self, n: int) -> list[Event]:
        """The events recorded once there are at least ``n`` (waits up to WAIT_S)."""
        await self.until(lambda: len(self.events) >= n, f"{n} events")
        return list(self.events)


class Node:
    """One started broker, its handler and, for Redis, the proxy it connects through."""

    def __init__(self, broker: Broker, handler: Recorder, proxy: FaultProxy | None) -> None:
        self.broker = broker
        self.handler = handler
        self.proxy = proxy


class Backend:
    """Start nodes of one broker backend; close them all at the end."""

    def __init__(self, kind: str, redis_url: str = "") -> None:
        self.kind = kind
        self.max_nodes = 1 if kind == "memory" else 8
        self._redis_url = redis_url
        self._nodes: list[Node] = []

    async def node(self, handler: Recorder | None = None) -> Node:
        """Start one more node on the bus (Redis nodes connect through a FaultProxy).

        Raises:
            AssertionError: the backend has no room for another node.
        """
        assert len(self._nodes) < self.max_nodes, f"{self.kind} has {self.max_nodes} node(s)"
        handler = handler or Recorder()
        proxy: FaultProxy | None = None
        broker: Broker
        if self.kind == "memory":
            broker = MemoryBroker()
        else:
            proxy = FaultProxy("127.0.0.1", urlsplit(self._redis_url).port or 6379)
            await proxy.start()
            broker = RedisBroker(f"redis://127.0.0.1:{proxy.port}/0")
        node = Node(broker, handler, proxy)
        self._nodes.append(node)
        await broker.start(handler)
        return node

    async def nodes(self, n: int = 2) -> list[Node]:
        """Up to ``n`` nodes (as many as the backend has)."""
        return [await self.node() for _ in range(min(n, self.max_nodes))]

    async def close(self) -> None:
        """Close every node (and its connections and proxy)."""
        for node in reversed(self._nodes):
            await node.broker.close()
            if isinstance(node.broker, RedisBroker):
                await node.broker.aclose()
            if node.proxy is not None:
                await node.proxy.close()


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """Each broker backend in turn, on an empty bus."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else ""
    made = Backend(request.param, url)
    yield made
    await made.close()


@pytest.fixture(params=["redis"])
async def networked(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """Each broker backend whose nodes talk over a connection that can be lost."""
    made = Backend(request.param, request.getfixturevalue("redis_url"))
    yield made
    await made.close()


def message(sequence: int, recipient: str = "bob", **fields: Any) -> StoredMessage:
    """A text entry in ``recipient``'s inbox at ``sequence`` (``fields`` override)."""
    entry = StoredMessage(
        sequence=sequence,
        message_id=1000 + sequence,
        sender="alice",
        sender_display_name="Alice",
        recipient=recipient,
        body=f"message {sequence}",
        sent_at=utc_now(),
        client_id=f"c{sequence}",
    )
    return dataclasses.replace(entry, **fields)


async def test_every_kind_of_event_arrives_unchanged(backend: Backend) -> None:
    """Messages (text, receipt, group update), presence changes and session events reach
    the handler equal to what was published, each through its own callback."""
    node = await backend.node()
    now = utc_now()
    published: list[Event] = [
        message(1, body='héllo ✓ \n"quoted"', group="~group:crew"),
        message(2, kind=EntryKind.RECEIPT, ref_message_id=77, body=""),
        message(
            3,
            kind=EntryKind.GROUP_UPDATE,
            group="~group:crew",
            action=GroupAction.MEMBERS_ADDED,
            members=("carol", "dave"),
            body="",
        ),
        PresenceChange(UserView("carol", "Carol", True, now, False), now),
        PresenceChange(UserView("echobot", "Echo", False, None, True), now + timedelta(0, 1)),
        SessionEvent(SessionEventKind.REVOKED, "bob"),
        SessionEvent(SessionEventKind.TAKEN_OVER, "bob", "ab" * 32),
    ]
    for event in published:
        if isinstance(event, StoredMessage):
            await node.broker.publish_message(event)
        elif isinstance(event, PresenceChange):
            await node.broker.publish_presence(event)
        else:
            await node.broker.publish_session_event(event)
    assert await node.handler.count(len(published)) == published


async def test_every_node_gets_every_event_in_each_publishers_order(backend: Backend) -> None:
    """Events published by each node, one after another, reach every node (the publisher
    included) and each node sees every publisher's events in publish order."""
    nodes = await backend.nodes(3)
    per_node = 40
    for i in range(per_node):
        for origin, node in enumerate(nodes):
            await node.broker.publish_message(message(i + 1, recipient=f"user{origin}"))
    for node in nodes:
        seen = await node.handler.count(per_node * len(nodes))
        assert len(seen) == per_node * len(nodes)
        for origin in range(len(nodes)):
            sequences = [
                e.sequence
                for e in seen
                if isinstance(e, StoredMessage) and e.recipient == f"user{origin}"
            ]
            assert sequences == list(range(1, per_node + 1))


async def test_session_events_reach_every_node_including_the_publisher(
    backend: Backend,
) -> None:
    """A revocation and a takeover published by one node reach every node's
    on_session_event, the publishing node's own included."""
    nodes = await backend.nodes(2)
    revoked = SessionEvent(SessionEventKind.REVOKED, "alice")
    taken = SessionEvent(SessionEventKind.TAKEN_OVER, "alice", "f" * 64)
    await nodes[-1].broker.publish_session_event(revoked)
    await nodes[-1].broker.publish_session_event(taken)
    for node in nodes:
        assert await node.handler.count(2) == [revoked, taken]


async def test_a_failing_handler_neither_fails_the_publisher_nor_stops_delivery(
    backend: Backend,
) -> None:
    """A handler callback that raises does not reach the publisher, and the events after it
    are still delivered (one delivery path whatever the backend)."""
    node = await backend.node(Recorder("message", "presence", "session"))
    now = utc_now()
    first, second = message(1), message(2)
    change = PresenceChange(UserView("carol", "Carol", True, now, False), now)
    event = SessionEvent(SessionEventKind.REVOKED, "carol")
    await node.broker.publish_message(first)
    await node.broker.publish_presence(change)
    await node.broker.publish_session_event(event)
    await node.broker.publish_message(second)
    await node.broker.publish_presence(change)
    assert await node.handler.count(5) == [first, change, event, second, change]


async def test_close_stops_delivery_to_that_node_only(backend: Backend) -> None:
    """After close() a node's handler gets nothing more, whoever publishes; the other nodes
    keep receiving."""
    closing, *others = await backend.nodes(2)
    first = message(1)
    await closing.broker.publish_message(first)
    await closing.handler.count(1)
    await closing.broker.close()
    await closing.broker.close()  # idempotent
    for node in others:
        await node.broker.publish_message(message(2))
    await closing.broker.publish_message(message(3))  # a closed node may publish or drop
    for node in others:
        received = await node.handler.count(3)
        assert [e.sequence for e in received if isinstance(e, StoredMessage)][-1] == 3
    assert closing.handler.events == [first]


async def test_lost_connection_resubscribes_and_calls_back(networked: Backend) -> None:
    """A node whose connection is cut subscribes again by itself, calls on_resubscribed
    once (it may have missed events), and receives what is published afterwards; the
    other node, still connected, is not told to resubscribe."""
    cut, steady = await networked.nodes(2)
    assert cut.proxy is not None
    cut.proxy.cut()
    await cut.handler.until(lambda: cut.handler.resubscribed == 1, "on_resubscribed")
    after = message(1)
    await steady.broker.publish_message(after)
    assert await cut.handler.count(1) == [after]
    assert await steady.handler.count(1) == [after]
    assert steady.handler.resubscribed == 0


async def test_a_failing_resubscribe_callback_does_not_stop_delivery(
    networked: Backend,
) -> None:
    """If on_resubscribed raises, the node still receives the events published after it
    resubscribed (the failure is the handler's, not the subscription's)."""
    cut = await networked.node(Recorder("resubscribed"))
    steady = await networked.node()
    assert cut.proxy is not None
    cut.proxy.cut()
    await cut.handler.until(lambda: cut.handler.resubscribed == 1, "on_resubscribed")
    after = message(1)
    await steady.broker.publish_message(after)
    assert await cut.handler.count(1) == [after]
