"""The Redis clients of a node wait for a free connection instead of failing under bursts."""

from __future__ import annotations

import asyncio

import pytest

from hubbub.server.broker_redis import RedisBroker
from hubbub.server.models import PresenceChange, SessionEvent, SessionEventKind, StoredMessage
from hubbub.server.presence_redis import RedisPresence

from ..backends import redis_server, redis_url

__all__ = ["redis_server", "redis_url"]  # fixtures by name

pytestmark = pytest.mark.timeout(60)

#: More concurrent calls than redis-py's default pool holds (100 connections).
BURST = 400


async def test_a_burst_of_presence_lookups_waits_for_pooled_connections(redis_url: str) -> None:
    """400 concurrent presence lookups all answer; none fails with "Too many connections"."""
    presence = RedisPresence(redis_url, ttl_s=5.0)
    try:
        answers = await asyncio.gather(
            *(presence.is_online(f"user{i}") for i in range(BURST)), return_exceptions=True
        )
    finally:
        await presence.close()
    failures = [a for a in answers if isinstance(a, BaseException)]
    assert failures == []
    assert answers == [False] * BURST


class _Collector:
    """A broker handler that records the session events it is given."""

    def __init__(self) -> None:
        self.events: list[SessionEvent] = []
        self.all_in = asyncio.Event()

    def on_message(self, message: StoredMessage) -> None:
        """Not expected here."""

    def on_presence(self, change: PresenceChange) -> None:
        """Not expected here."""

    def on_session_event(self, event: SessionEvent) -> None:
        """Record one event; set ``all_in`` at the BURST-th."""
        self.events.append(event)
        if len(self.events) == BURST:
            self.all_in.set()

    def on_resubscribed(self) -> None:
        """Not expected here."""


async def test_a_burst_of_publishes_reaches_the_subscriber(redis_url: str) -> None:
    """400 concurrent broker publishes all reach a subscribed node; none is dropped."""
    broker = RedisBroker(redis_url)
    collector = _Collector()
    try:
        await broker.start(collector)
        await asyncio.gather(
            *(
                broker.publish_session_event(SessionEvent(SessionEventKind.REVOKED, f"u{i}"))
                for i in range(BURST)
            )
        )
        async with asyncio.timeout(10):
            await collector.all_in.wait()
    finally:
        await broker.close()
    assert sorted(e.username for e in collector.events) == sorted(f"u{i}" for i in range(BURST))
