"""Presence fan-out at scale, without a network: coalesced per stream, never an overflow."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hubbub.server.broker_memory import MemoryBroker
from hubbub.server.events import OutEvent, OutPresence, OutWelcome
from hubbub.server.hub import Hub, HubLimits
from hubbub.server.models import Account
from hubbub.server.presence_memory import MemoryPresence
from hubbub.server.session import ChatSession
from hubbub.server.store_sqlite import SqliteStore

pytestmark = pytest.mark.timeout(60)

QUIET_S = 0.5  # no further event within this long: the stream has everything


async def started_hub(tmp_path: Path, outbox_events: int) -> tuple[Hub, SqliteStore]:
    """A started hub on a fresh SQLite store with the memory broker and presence."""
    store = SqliteStore(tmp_path / "hub.db")
    await store.open()
    hub = Hub(store, MemoryBroker(), MemoryPresence(), HubLimits(outbox_events=outbox_events))
    await hub.start()
    return hub, store


async def accounts(store: SqliteStore, count: int) -> list[Account]:
    """``count`` accounts u00, u01, …"""
    return [await store.create_account(f"u{i:02}", f"U{i:02}", "!") for i in range(count)]


async def everything(session: ChatSession) -> list[OutEvent]:
    """Every event the stream's writer would write until it has been idle for QUIET_S s."""
    events: list[OutEvent] = []
    while True:
        try:
            events.append(await asyncio.wait_for(session.outbox.get(), QUIET_S))
        except TimeoutError:
            return events


def presence(events: list[OutEvent]) -> list[tuple[str, bool]]:
    """The presence events among ``events`` as (username, online), in order."""
    return [
        (e.change.user.username, e.change.user.online) for e in events if isinstance(e, OutPresence)
    ]


async def test_a_connect_burst_never_overflows_an_unread_outbox(tmp_path: Path) -> None:
    """30 connects while no stream is read: nobody is dropped as a slow consumer, and each
    stream then gets the Welcome and one online event per user that came after it."""
    hub, store = await started_hub(tmp_path, outbox_events=4)
    users = await accounts(store, 30)
    sessions = [await hub.open_session(u) for u in users]
    assert [s.close_error for s in sessions] == [None] * 30
    for i, session in enumerate(sessions):
        events = await everything(session)
        assert isinstance(events[0], OutWelcome)
        assert presence(events) == [(u.username, True) for u in users[i + 1 :]]
    await store.close()


async def test_a_stream_gets_only_the_latest_state_of_a_flapping_user(tmp_path: Path) -> None:
    """Users that connect and disconnect several times while a stream is not read reach it
    as one event each, with their latest state."""
    hub, store = await started_hub(tmp_path, outbox_events=1024)
    watcher, flapper, stayer = await accounts(store, 3)
    w = await hub.open_session(watcher)
    for _ in range(5):
        await hub.close_session(await hub.open_session(flapper))
    await hub.open_session(stayer)
    events = await everything(w)
    assert isinstance(events[0], OutWelcome)
    assert presence(events) == [(flapper.username, False), (stayer.username, True)]
    await store.close()


async def test_every_connect_still_gets_the_full_online_list(tmp_path: Path) -> None:
    """The k-th connect's Welcome lists the k users online then and echobot, sorted."""
    hub, store = await started_hub(tmp_path, outbox_events=1024)
    users = await accounts(store, 12)
    for k, user in enumerate(users, start=1):
        session = await hub.open_session(user)
        welcome = await asyncio.wait_for(session.outbox.get(), 2)
        assert isinstance(welcome, OutWelcome)
        expected = sorted([u.username for u in users[:k]] + ["echobot"])
        assert [u.username for u in welcome.online] == expected
        assert all(u.online for u in welcome.online)
    await store.close()
