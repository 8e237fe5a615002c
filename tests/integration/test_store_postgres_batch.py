"""The PostgreSQL store's group commit when a batch fails: every member still gets its result."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeVar

import pytest
from asyncpg.exceptions import DeadlockDetectedError

from hubbub.server import store_ops_inbox, store_postgres
from hubbub.server.models import Account, Appended, EntryKind, utc_now
from hubbub.server.sql import Dialect, Op
from hubbub.server.store_postgres import PostgresStore

from ..backends import postgres_server, postgres_url

__all__ = ["postgres_server", "postgres_url"]  # fixtures used by name

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[PostgresStore]:
    """A PostgreSQL store on a fresh database."""
    opened = PostgresStore(postgres_url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def test_batch_that_deadlocks_reruns_each_member_once(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch rolled back by a deadlock (after its statements ran) is rerun member by member:
    each send gets its result, nothing is lost or stored twice, a resend stays a duplicate."""
    alice = await store.create_account("alice", "Alice", "hash")
    bob = await store.create_account("bob", "Bob", "hash")
    now = utc_now()
    stored = await store.store_message(alice, bob, "c0", "before", now)
    real = store_ops_inbox.append_many
    failed: list[int] = []

    def deadlocking(d: Dialect, entries: Sequence[store_ops_inbox.NewEntry]) -> Op[list[Appended]]:
        result = yield from real(d, entries)
        if len(entries) > 1 and not failed:
            failed.append(len(entries))
            raise DeadlockDetectedError("deadlock detected (injected)")
        return result

    monkeypatch.setattr(store_ops_inbox, "append_many", deadlocking)
    senders: list[Account] = [alice] * 6
    queued = [
        store.store_message(sender, bob, f"c{n}", f"m{n}", now) for n, sender in enumerate(senders)
    ]
    results: list[Appended] = await asyncio.gather(*queued)
    assert failed and failed[0] > 1  # the batch did fail once
    assert [r.duplicate for r in results] == [True, False, False, False, False, False]
    assert results[0].message_id == stored.message_id
    inbox = await store.messages_after(bob, 0, 20)
    assert [(m.sequence, m.body) for m in inbox] == [
        (n + 1, f"m{n}" if n else "before") for n in range(6)
    ]
    assert (await store.cursor(bob)).last_sequence == 6


async def test_a_write_stalled_past_the_idle_transaction_timeout_is_rerun(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node stalled inside a write transaction longer than IDLE_IN_TRANSACTION_MS loses it
    (PostgreSQL ends it and frees its row locks); the write is then run again and succeeds."""
    alice = await store.create_account("alice", "Alice", "hash")
    bob = await store.create_account("bob", "Bob", "hash")
    now = utc_now()
    await store.store_message(alice, bob, "c1", "hello", now)
    real = store_postgres.run_op
    stalled: list[bool] = []

    async def stalling(conn: Any, op: Op[T]) -> T:
        if not stalled:  # the first write: one statement, then the node "freezes"
            stalled.append(True)
            await conn.execute("SELECT 1")
            await asyncio.sleep(store_postgres.IDLE_IN_TRANSACTION_MS / 1000 + 1.0)
        return await real(conn, op)

    monkeypatch.setattr(store_postgres, "run_op", stalling)
    receipts = await store.ack(bob, 1, utc_now())
    assert stalled == [True]
    assert [r.kind for r in receipts] == [EntryKind.RECEIPT]
    assert (await store.cursor(bob)).acked_sequence == 1
