"""Hub delivery rules without a network: ordering, gap filling, overflow, presence, acks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hubbub.server.broker_memory import MemoryBroker
from hubbub.server.errors import AlreadyConnected, ServerFull, SlowConsumer
from hubbub.server.events import (
    InAck,
    InResume,
    InSend,
    OutError,
    OutEvent,
    OutMessage,
    OutPresence,
    OutSendResult,
    OutSynced,
    OutWelcome,
)
from hubbub.server.hub import Hub, HubLimits
from hubbub.server.models import Account, EntryKind
from hubbub.server.outbox import OutboxClosed
from hubbub.server.presence_memory import MemoryPresence
from hubbub.server.store_postgres import PostgresStore
from hubbub.server.store_sqlite import SqliteStore

from ..backends import postgres_server, postgres_url

__all__ = ["postgres_server", "postgres_url"]  # fixtures used by name (postgres param)

pytestmark = pytest.mark.timeout(20)


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """A fresh store of each backend: SQLite, then PostgreSQL (same hub scenarios)."""
    s = (
        PostgresStore(request.getfixturevalue("postgres_url"))
        if request.param == "postgres"
        else SqliteStore(tmp_path / "hub.db")
    )
    await s.open()
    yield s
    await s.close()


async def make_hub(store: SqliteStore, **limits: int) -> Hub:
    """A started hub over ``store`` with the memory broker and presence."""
    hub = Hub(store, MemoryBroker(), MemoryPresence(), HubLimits(**limits))
    await hub.start()
    return hub


async def drain(queue_get: object, n: int) -> list[OutEvent]:
    """Take ``n`` events from an outbox."""
    get = queue_get  # an Outbox.get bound method
    return [await asyncio.wait_for(get(), 2) for _ in range(n)]  # type: ignore[operator]


async def users(store: SqliteStore, *names: str) -> list[Account]:
    """Create accounts (password hashes are irrelevant here)."""
    return [await store.create_account(n, n.title(), "!") for n in names]


async def test_out_of_order_publish_is_delivered_in_sequence(store: SqliteStore) -> None:
    """A stored message published before its predecessor is held back until the gap is filled."""
    hub = await make_hub(store)
    alice, bob = await users(store, "alice", "bob")
    session = await hub.open_session(bob)
    await hub.handle(session, InResume(None))
    events = await drain(session.outbox.get, 2)
    assert isinstance(events[0], OutWelcome) and isinstance(events[1], OutSynced)
    now = events[0].user.presence_changed_at
    assert now is not None
    (m1,) = (await store.store_message(alice, bob, "c1", "one", now)).entries
    (m2,) = (await store.store_message(alice, bob, "c2", "two", now)).entries
    hub.on_message(m2)  # seq 2 arrives first: the session fills 1..2 from the store
    hub.on_message(m1)
    got = await drain(session.outbox.get, 2)
    assert [e.message.sequence for e in got if isinstance(e, OutMessage)] == [1, 2]
    hub.on_message(m2)  # a re-publish (e.g. a resend) is not shown twice
    (m3,) = (await store.store_message(alice, bob, "c3", "three", now)).entries
    hub.on_message(m3)
    (third,) = await drain(session.outbox.get, 1)
    assert isinstance(third, OutMessage) and third.message.sequence == 3


async def test_full_outbox_disconnects_only_that_client(store: SqliteStore) -> None:
    """A client whose outbox overflows is failed with SLOW_CONSUMER; the sender is unaffected."""
    hub = await make_hub(store, outbox_events=4)
    alice, bob = await users(store, "alice", "bob")
    slow = await hub.open_session(bob)
    await hub.handle(slow, InResume(None))
    sender = await hub.open_session(alice)
    await hub.handle(sender, InResume(None))
    await drain(sender.outbox.get, 2)  # welcome, synced
    for i in range(8):  # nobody drains bob's outbox; alice's is drained
        await hub.handle(sender, InSend(f"c{i}", "bob", f"m{i}"))
        (result,) = await drain(sender.outbox.get, 1)
        assert isinstance(result, OutSendResult) and result.receipt.client_id == f"c{i}"
    assert isinstance(slow.close_error, SlowConsumer)
    assert sender.close_error is None
    with pytest.raises(OutboxClosed):
        await slow.outbox.get()
    cursor = await store.cursor(bob)
    assert cursor.last_sequence == 8


async def test_presence_reaches_others_after_their_welcome(store: SqliteStore) -> None:
    """Presence events go to other online users, never to the user itself, after Welcome."""
    hub = await make_hub(store)
    alice, bob = await users(store, "alice", "bob")
    a = await hub.open_session(alice)
    b = await hub.open_session(bob)
    a_events = await drain(a.outbox.get, 2)
    assert isinstance(a_events[0], OutWelcome)
    assert isinstance(a_events[1], OutPresence) and a_events[1].change.user.username == "bob"
    (b_welcome,) = await drain(b.outbox.get, 1)
    assert isinstance(b_welcome, OutWelcome)
    assert [u.username for u in b_welcome.online] == ["alice", "bob", "echobot"]
    await hub.close_session(b)
    (gone,) = await drain(a.outbox.get, 1)
    assert isinstance(gone, OutPresence) and not gone.change.user.online


async def test_one_stream_per_user_and_capacity(store: SqliteStore) -> None:
    """A second stream of a user and a stream past max_clients are refused."""
    hub = await make_hub(store, max_clients=2)
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    a = await hub.open_session(alice)
    with pytest.raises(AlreadyConnected):
        await hub.open_session(alice)
    await hub.open_session(bob)
    with pytest.raises(ServerFull):
        await hub.open_session(carol)
    await hub.close_session(a)
    await hub.open_session(carol)


async def test_ack_is_persisted_and_bounded(store: SqliteStore) -> None:
    """Acks are cumulative, stored on close, and an ack past what was sent is refused."""
    hub = await make_hub(store)
    alice, bob = await users(store, "alice", "bob")
    for i in range(3):
        await hub.sending.send_direct(alice, "bob", f"c{i}", f"m{i}")
    b = await hub.open_session(bob)
    await hub.handle(b, InResume(None))
    await drain(b.outbox.get, 5)  # welcome, 3 messages, synced
    await hub.handle(b, InAck(2))
    await hub.handle(b, InAck(1))  # lower acks never move the cursor back
    await hub.handle(b, InAck(9))
    (err,) = await drain(b.outbox.get, 1)
    assert isinstance(err, OutError) and err.error.violations[0].field == "ack.sequence"
    await hub.close_session(b)
    cursor = await store.cursor(bob)
    assert (cursor.acked_sequence, cursor.last_sequence) == (2, 3)


async def test_replay_larger_than_outbox_waits_instead_of_failing(store: SqliteStore) -> None:
    """Replaying more stored messages than the outbox holds applies backpressure, no disconnect."""
    hub = await make_hub(store, outbox_events=4)
    alice, bob = await users(store, "alice", "bob")
    for i in range(50):
        await hub.sending.send_direct(alice, "bob", f"c{i}", f"m{i}")
    b = await hub.open_session(bob)
    await hub.handle(b, InResume(None))
    events = await drain(b.outbox.get, 52)
    seqs = [e.message.sequence for e in events if isinstance(e, OutMessage)]
    assert seqs == list(range(1, 51))
    assert b.close_error is None


async def test_echobot_catches_up_after_restart(store: SqliteStore) -> None:
    """Messages stored for echobot while no hub ran are answered when a hub starts."""
    (alice,) = await users(store, "alice")
    hub = await make_hub(store)
    echobot = await store.get_account("echobot")
    assert echobot is not None
    await hub.shutdown()
    await store.store_message(alice, echobot, "late", "are you there?", alice.created_at)
    hub2 = await make_hub(store)
    await asyncio.wait_for(hub2.bots.queue.join(), 5)
    entries = await store.messages_after(alice, 0, 10)
    kinds = {e.kind: e for e in entries}
    assert set(kinds) == {EntryKind.TEXT, EntryKind.RECEIPT}  # the echo, and "delivered"
    echo = kinds[EntryKind.TEXT]
    assert (echo.sender, echo.body) == ("echobot", "are you there?")
    assert kinds[EntryKind.RECEIPT].client_id == "late"
