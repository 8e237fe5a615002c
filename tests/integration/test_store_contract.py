"""The Store contract, written once and run against every backend (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from hubbub.server import schema
from hubbub.server.errors import (
    GroupNameTaken,
    GroupNotFound,
    NotGroupMember,
    UsernameConfusable,
    UsernameTaken,
)
from hubbub.server.models import Account, Appended, EntryKind, GroupAction, SessionInfo, utc_now
from hubbub.server.sql import POSTGRES, SQLITE
from hubbub.server.store import Store
from hubbub.server.store_postgres import PostgresStore
from hubbub.server.store_sqlite import SqliteStore
from hubbub.server.usernames import skeleton

from ..backends import postgres_server, postgres_url

__all__ = ["postgres_server", "postgres_url"]  # fixtures used by name

pytestmark = pytest.mark.timeout(60)

Opener = Callable[[], Awaitable[Any]]


class Backend:
    """A store under test plus a way to open more stores on the same database (more nodes)."""

    def __init__(self, kind: str, make: Callable[[], Any], target: str) -> None:
        self.kind = kind
        self.target = target  # the SQLite file or the PostgreSQL URL
        self._make = make
        self._opened: list[Any] = []

    async def open(self) -> Any:
        """Open one more store on the backend's database."""
        store = self._make()
        await store.open()
        self._opened.append(store)
        return store

    async def close(self) -> None:
        """Close every store opened."""
        for store in reversed(self._opened):
            await store.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """Each store backend in turn, on a fresh database."""
    if request.param == "sqlite":
        path = tmp_path / "contract.db"
        made = Backend("sqlite", lambda: SqliteStore(path), str(path))
    else:
        url = request.getfixturevalue("postgres_url")
        made = Backend("postgres", lambda: PostgresStore(url), url)
    yield made
    await made.close()


@pytest.fixture
async def store(backend: Backend) -> Any:
    """The backend's first store (typed loosely: SqliteStore or PostgresStore)."""
    return await backend.open()


async def users(store: Store, *names: str) -> list[Account]:
    """Create accounts named ``names``."""
    return [await store.create_account(n, n.title(), "hash") for n in names]


async def test_accounts_unique_and_sorted_by_code_point(store: Store) -> None:
    """Usernames are unique, and list_accounts sorts them by code point on every backend."""
    await users(store, "ab", "a.c", "a-b", "a_z", "b", "zoe")
    with pytest.raises(UsernameTaken):
        await store.create_account("ab", "again", "hash")
    names = [a.username for a in await store.list_accounts()]
    assert names == sorted(["ab", "a.c", "a-b", "a_z", "b", "zoe"])
    found = await store.get_account("a.c")
    assert found is not None and found.display_name == "A.C" and not found.bot
    assert await store.get_account("nobody") is None


async def test_idempotent_resend_stores_once(store: Store) -> None:
    """A resend with the same (sender, client id) returns the stored entry with duplicate=True."""
    alice, bob = await users(store, "alice", "bob")
    now = utc_now()
    first = await store.store_message(alice, bob, "c1", "hello", now)
    again = await store.store_message(alice, bob, "c1", "hello (resent)", now + timedelta(1))
    assert not first.duplicate and again.duplicate
    assert again.message_id == first.message_id and again.sent_at == first.sent_at
    assert [(e.sequence, e.body) for e in again.entries] == [(1, "hello")]
    assert again.entries == first.entries
    other = await store.store_message(bob, alice, "c1", "same id, other sender", now)
    assert not other.duplicate  # idempotency is per sender
    assert (await store.cursor(bob)).last_sequence == 1
    assert [m.body for m in await store.messages_after(bob, 0, 10)] == ["hello"]


async def test_concurrent_duplicates_on_two_nodes_resolve_to_one_message(
    backend: Backend, store: Store
) -> None:
    """The same send stored at once through two stores (two nodes) is stored once, no error."""
    alice, bob = await users(store, "alice", "bob")
    twin = await backend.open()
    now = utc_now()
    pairs = []
    for i in range(30):
        pairs.append(
            (
                store.store_message(alice, bob, f"c{i}", f"m{i}", now),
                twin.store_message(alice, bob, f"c{i}", f"m{i}", now),
            )
        )
    for a, b in pairs:
        one: Appended
        two: Appended
        one, two = await asyncio.gather(a, b)
        assert sorted([one.duplicate, two.duplicate]) == [False, True]
        assert one.message_id == two.message_id and one.entries == two.entries
    inbox = await store.messages_after(bob, 0, 100)
    assert [m.sequence for m in inbox] == list(range(1, 31))
    assert sorted(m.client_id for m in inbox) == sorted(f"c{i}" for i in range(30))


async def test_sequences_gap_free_under_concurrent_senders(backend: Backend, store: Store) -> None:
    """Many senders on two stores writing to one inbox at once get sequences 1..N, no gap."""
    senders = await users(store, *(f"s{i}" for i in range(8)))
    (bob,) = await users(store, "bob")
    twin = await backend.open()
    now = utc_now()
    pending = [
        (store if i % 2 else twin).store_message(
            sender, bob, f"c{n}", f"{sender.username}:{n}", now
        )
        for n in range(25)
        for i, sender in enumerate(senders)
    ]
    results = await asyncio.gather(*pending)
    assert not any(r.duplicate for r in results)
    sequences = sorted(r.entries[0].sequence for r in results)
    assert sequences == list(range(1, 201))
    inbox = await store.messages_after(bob, 0, 500)
    assert [m.sequence for m in inbox] == list(range(1, 201))
    for sender in senders:  # each sender's messages keep their order
        mine = [int(m.body.split(":")[1]) for m in inbox if m.sender == sender.username]
        assert mine == list(range(25))
    assert (await store.cursor(bob)).last_sequence == 200


async def test_one_senders_queued_writes_commit_in_call_order(store: Store) -> None:
    """Writes queued without awaiting (direct and group) commit in the order they were made."""
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    await store.create_group("team", alice, [bob, carol], utc_now())
    now = utc_now()
    queued = []
    for n in range(120):
        if n % 3 == 0:
            queued.append(store.store_message(alice, bob, f"d{n}", str(n), now))
        elif n % 3 == 1:
            queued.append(store.store_message(alice, carol, f"d{n}", str(n), now))
        else:
            queued.append(store.store_group_message(alice, "team", f"g{n}", str(n), now))
    results: list[Appended] = await asyncio.gather(*queued)
    ids = [r.message_id for r in results]
    assert ids == sorted(ids)  # committed one after the other, in call order
    for who in (bob, carol):
        texts = [m for m in await store.messages_after(who, 0, 500) if m.kind is EntryKind.TEXT]
        bodies = [int(m.body) for m in texts]
        assert bodies == sorted(bodies) and len(bodies) == 80
        assert [m.sequence for m in texts] == sorted(m.sequence for m in texts)


async def test_concurrent_sends_share_group_commits(store: Any) -> None:
    """Sends queued together commit in fewer transactions than sends (group commit), with
    gap-free sequences and each sender's order kept."""
    senders = await users(store, "s0", "s1", "s2", "s3")
    bob, carol = await users(store, "bob", "carol")
    now = utc_now()
    before = store.group_commits
    queued = [
        store.store_message(sender, bob if n % 3 else carol, f"c{n}", f"{sender.username}:{n}", now)
        for n in range(15)
        for sender in senders
    ]
    results: list[Appended] = await asyncio.gather(*queued)
    assert store.group_commits - before < len(queued)
    assert not any(r.duplicate for r in results)
    for who, count in ((bob, 40), (carol, 20)):
        inbox = await store.messages_after(who, 0, 100)
        assert [m.sequence for m in inbox] == list(range(1, count + 1))
        for sender in senders:
            mine = [int(m.body.split(":")[1]) for m in inbox if m.sender == sender.username]
            assert mine == sorted(mine)


async def test_repeated_client_id_in_one_batch_resolves_to_the_first(store: Store) -> None:
    """A client id queued twice at once is stored once; the repeat and every other send of
    the batch get their own result."""
    alice, bob = await users(store, "alice", "bob")
    now = utc_now()
    queued = [
        store.store_message(alice, bob, client_id, f"body of {client_id} #{n}", now)
        for n, client_id in enumerate(["c1", "c2", "c1", "c3"])
    ]
    first, second, repeat, third = await asyncio.gather(*queued)
    assert [r.duplicate for r in (first, second, repeat, third)] == [False, False, True, False]
    assert repeat.message_id == first.message_id and repeat.entries == first.entries
    inbox = await store.messages_after(bob, 0, 10)
    assert [(m.sequence, m.body) for m in inbox] == [
        (1, "body of c1 #0"),
        (2, "body of c2 #1"),
        (3, "body of c3 #3"),
    ]


async def test_receipts_created_on_ack_exactly_once(store: Store) -> None:
    """Acking direct messages stores a receipt for each sender (one per ack), once."""
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    bot = await store.create_account("robot", "Robot", "!", bot=True)
    await store.create_group("pair", alice, [bob], utc_now())  # bob seq 1: group update
    now = utc_now()
    m1 = await store.store_message(alice, bob, "a1", "one", now)  # seq 2
    await store.store_group_message(alice, "pair", "g1", "group text", now)  # seq 3: no receipt
    m2 = await store.store_message(carol, bob, "c1", "two", now)  # seq 4
    await store.store_message(bot, bob, "b1", "from a bot", now)  # seq 5: no receipt
    await store.store_message(bob, bob, "self", "note to self", now)  # seq 6: no receipt
    m3 = await store.store_message(alice, bob, "a2", "three", now)  # seq 7

    first = await store.ack(bob, 4, now)
    assert [(r.recipient, r.kind, r.ref_message_id, r.client_id) for r in first] == [
        ("alice", EntryKind.RECEIPT, m1.message_id, "a1"),
        ("carol", EntryKind.RECEIPT, m2.message_id, "c1"),
    ]
    assert all(r.sender == "bob" for r in first)
    assert await store.ack(bob, 4, now) == []  # the same ack again
    assert await store.ack(bob, 2, now) == []  # a lower ack never moves the cursor back
    last = await store.ack(bob, 99, now)  # capped at the last stored sequence
    assert [(r.recipient, r.ref_message_id) for r in last] == [("alice", m3.message_id)]
    assert await store.cursor(bob) == type(await store.cursor(bob))(7, 7)
    alice_inbox = await store.messages_after(alice, 0, 50)
    receipts = [m for m in alice_inbox if m.kind is EntryKind.RECEIPT]
    assert [(m.client_id, m.sequence) for m in receipts] == [("a1", 2), ("a2", 3)]
    assert [m.kind for m in await store.messages_after(carol, 0, 50)] == [EntryKind.RECEIPT]
    assert [m.kind for m in await store.messages_after(bot, 0, 50)] == []


async def test_groups_membership_and_errors(store: Store) -> None:
    """Create/add/leave announce to members; non-members and unknown groups are refused."""
    alice, bob, carol, dave = await users(store, "alice", "bob", "carol", "dave")
    now = utc_now()
    group, created = await store.create_group("team", alice, [bob, bob], now)
    assert group.members == ("alice", "bob") and group.name == "team"
    assert sorted(e.recipient for e in created.entries) == ["alice", "bob"]
    assert all(e.kind is EntryKind.GROUP_UPDATE for e in created.entries)
    assert created.entries[0].action is GroupAction.CREATED
    with pytest.raises(GroupNameTaken):
        await store.create_group("team", carol, [], now)
    with pytest.raises(NotGroupMember):
        await store.store_group_message(carol, "team", "x", "let me in", now)
    with pytest.raises(GroupNotFound):
        await store.store_group_message(alice, "nope", "x", "hello?", now)
    with pytest.raises(NotGroupMember):
        await store.add_members("team", carol, [carol], now)
    with pytest.raises(GroupNotFound):
        await store.add_members("nope", alice, [carol], now)
    same, nothing = await store.add_members("team", bob, [alice], now)
    assert nothing is None and same.members == ("alice", "bob")
    after, added = await store.add_members("team", bob, [dave, carol, carol], now)
    assert after.members == ("alice", "bob", "carol", "dave")
    assert added is not None and added.entries[0].members == ("carol", "dave")
    assert sorted(e.recipient for e in added.entries) == ["alice", "bob", "carol", "dave"]
    sent = await store.store_group_message(carol, "team", "c1", "hi all", now)
    assert sorted(e.recipient for e in sent.entries) == ["alice", "bob", "dave"]
    assert {e.group for e in sent.entries} == {"team"}
    left = await store.leave_group("team", bob, now)
    assert sorted(e.recipient for e in left.entries) == ["alice", "bob", "carol", "dave"]
    assert left.entries[0].action is GroupAction.MEMBERS_LEFT
    with pytest.raises(NotGroupMember):
        await store.leave_group("team", bob, now)
    with pytest.raises(NotGroupMember):
        await store.store_group_message(bob, "team", "b1", "still here?", now)
    await store.create_group("alpha", carol, [alice], now)
    assert [g.name for g in await store.list_groups(alice)] == ["alpha", "team"]
    assert [g.name for g in await store.list_groups(bob)] == []
    team = await store.get_group("team")
    assert team is not None and team.members == ("alice", "carol", "dave")
    assert await store.get_group("nope") is None


async def test_history_newest_first_with_paging(store: Store) -> None:
    """History returns one conversation's text messages newest first, paged by id."""
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    now = utc_now()
    ids = []
    for n in range(7):
        sender, recipient = (alice, bob) if n % 2 == 0 else (bob, alice)
        ids.append((await store.store_message(sender, recipient, f"h{n}", f"m{n}", now)).message_id)
    await store.store_message(alice, carol, "other", "not in this conversation", now)
    await store.ack(bob, 4, now)  # receipts are not history
    page = await store.history(alice, peer=bob, group=None, before_id=2**62, limit=3)
    assert [m.body for m in page] == ["m6", "m5", "m4"]
    assert all(m.sequence == 0 for m in page)
    assert (page[0].sender, page[0].recipient) == ("alice", "bob")
    page2 = await store.history(bob, peer=alice, group=None, before_id=page[-1].message_id, limit=3)
    assert [m.body for m in page2] == ["m3", "m2", "m1"]
    page3 = await store.history(alice, peer=bob, group=None, before_id=ids[1], limit=3)
    assert [m.body for m in page3] == ["m0"]
    await store.create_group("team", alice, [bob], now)
    for n in range(4):
        await store.store_group_message(bob if n % 2 else alice, "team", f"t{n}", f"t{n}", now)
    group_page = await store.history(bob, peer=None, group="team", before_id=2**62, limit=3)
    assert [(m.body, m.group) for m in group_page] == [
        ("t3", "team"),
        ("t2", "team"),
        ("t1", "team"),
    ]
    with pytest.raises(NotGroupMember):
        await store.history(carol, peer=None, group="team", before_id=2**62, limit=3)
    with pytest.raises(GroupNotFound):
        await store.history(carol, peer=None, group="nope", before_id=2**62, limit=3)


async def test_sessions_by_token_hash_with_expiry(store: Store) -> None:
    """A session is found by its token hash until it expires or is deleted."""
    (alice,) = await users(store, "alice")
    now = utc_now()
    await store.create_session(b"live" * 8, alice.id, now + timedelta(hours=1))
    await store.create_session(b"dead" * 8, alice.id, now - timedelta(seconds=1))
    found = await store.get_session(b"live" * 8, now)
    assert found == SessionInfo(alice, now + timedelta(hours=1))
    assert await store.get_session(b"dead" * 8, now) is None
    assert await store.get_session(b"live" * 8, now + timedelta(hours=2)) is None
    assert await store.get_session(b"none" * 8, now) is None
    await store.delete_session(b"live" * 8)
    await store.delete_session(b"never-existed")
    assert await store.get_session(b"live" * 8, now) is None


async def test_update_account_revokes_other_sessions(store: Store) -> None:
    """A new password revokes every other session; a display name change keeps them."""
    (alice,) = await users(store, "alice")
    later = utc_now() + timedelta(hours=1)
    for token in (b"a" * 32, b"b" * 32, b"c" * 32):
        await store.create_session(token, alice.id, later)
    renamed = await store.update_account(alice, display_name="Alice Liddell")
    assert renamed.display_name == "Alice Liddell" and renamed.password_hash == "hash"
    assert await store.get_session(b"a" * 32, utc_now()) is not None
    changed = await store.update_account(renamed, password_hash="new", keep_session=b"b" * 32)
    assert changed.password_hash == "new" and changed.display_name == "Alice Liddell"
    assert await store.get_session(b"a" * 32, utc_now()) is None
    assert await store.get_session(b"b" * 32, utc_now()) is not None
    assert await store.get_session(b"c" * 32, utc_now()) is None
    await store.update_account(changed, password_hash="newer")  # no session kept
    assert await store.get_session(b"b" * 32, utc_now()) is None
    stored = await store.get_account("alice")
    assert stored is not None and stored.password_hash == "newer"


async def test_reopen_keeps_everything(backend: Backend, store: Store) -> None:
    """Closing and reopening (schema already current) keeps accounts, inboxes and cursors."""
    alice, bob = await users(store, "alice", "bob")
    await store.store_message(alice, bob, "c1", "kept", utc_now())
    await store.ack(bob, 1, utc_now())
    await store.close()
    again = await backend.open()
    bob2 = await again.get_account("bob")
    assert bob2 is not None
    assert [m.body for m in await again.messages_after(bob2, 0, 10)] == ["kept"]
    assert (await again.cursor(bob2)).acked_sequence == 1
    receipts = await again.messages_after(alice, 0, 10)
    assert [m.kind for m in receipts] == [EntryKind.RECEIPT]


async def test_concurrent_group_messages_and_cross_acks_never_fail(
    backend: Backend, store: Store
) -> None:
    """Group sends from many members and acks in both directions at once: no error, no gap."""
    members = await users(store, *(f"m{i}" for i in range(6)))
    twin = await backend.open()
    await store.create_group("crowd", members[0], members[1:], utc_now())
    now = utc_now()
    sends = [
        (store if i % 2 else twin).store_group_message(m, "crowd", f"g{n}", f"{i}:{n}", now)
        for n in range(10)
        for i, m in enumerate(members)
    ]
    await asyncio.gather(*sends)
    for m in members:  # 1 group update + 10 messages from each of the 5 others
        inbox = await store.messages_after(m, 0, 500)
        assert [e.sequence for e in inbox] == list(range(1, 52))
    a, b = members[0], members[1]
    for n in range(15):  # direct messages both ways, then both ack at the same time
        await store.store_message(a, b, f"d{n}", "to b", now)
        await twin.store_message(b, a, f"d{n}", "to a", now)
    last_a = (await store.cursor(a)).last_sequence
    last_b = (await store.cursor(b)).last_sequence
    acks = []
    for step in range(1, 8):
        acks.append(store.ack(a, last_a * step // 7, now))
        acks.append(twin.ack(b, last_b * step // 7, now))
    receipts = [r for batch in await asyncio.gather(*acks) for r in batch]
    covered = [(r.recipient, mid) for r in receipts for mid in r.ref_message_ids]
    assert sorted(who for who, _ in covered) == ["m0"] * 15 + ["m1"] * 15
    assert len(set(covered)) == 30  # every message covered by exactly one receipt


async def test_one_ack_over_many_messages_gives_one_cumulative_receipt_per_sender(
    store: Store,
) -> None:
    """One ack over N direct texts of one sender stores ONE receipt listing all N, oldest
    first (message_id/client_id = the last), one per sender; replay reads the same lists."""
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    now = utc_now()
    sent = []
    for i in range(5):
        sent.append(await store.store_message(alice, bob, f"a{i}", f"text {i}", now))
        if i == 2:
            await store.store_message(carol, bob, "c0", "from carol", now)
    receipts = await store.ack(bob, 6, now)
    assert [(r.recipient, r.kind) for r in receipts] == [
        ("alice", EntryKind.RECEIPT),
        ("carol", EntryKind.RECEIPT),
    ]
    to_alice = receipts[0]
    assert to_alice.ref_message_ids == tuple(m.message_id for m in sent)
    assert to_alice.ref_client_ids == ("a0", "a1", "a2", "a3", "a4")
    assert (to_alice.ref_message_id, to_alice.client_id) == (sent[-1].message_id, "a4")
    assert receipts[1].ref_client_ids == ("c0",)
    (stored,) = await store.messages_after(alice, 0, 10)  # ONE entry in alice's inbox
    assert stored == to_alice
    more = await store.store_message(alice, bob, "a5", "later", now)
    (next_receipt,) = await store.ack(bob, 7, now)
    assert next_receipt.ref_message_ids == (more.message_id,) and next_receipt.sequence == 2


async def test_list_accounts_pages_by_name(store: Store) -> None:
    """list_accounts(after, limit) returns the next ``limit`` names after ``after``, in order."""
    names = ["b", "a.c", "ab", "a-b", "zoe", "a_z", "émile", "zz"]
    await users(store, *(n if len(n) >= 3 else n * 3 for n in names))
    everyone = [a.username for a in await store.list_accounts()]
    assert everyone == sorted(everyone) and len(everyone) == len(names)
    seen: list[str] = []
    after = ""
    while page := await store.list_accounts(after=after, limit=3):
        assert len(page) <= 3
        seen += [a.username for a in page]
        after = page[-1].username
    assert seen == everyone
    assert [a.username for a in await store.list_accounts(after="zoe")] == ["zzzzzz", "émile"]
    assert await store.list_accounts(after="\U0010ffff") == []


async def test_history_id_stable_across_reopen(backend: Backend, store: Store) -> None:
    """The history id is 32 hex digits, the same on every node and after a restart."""
    first = await store.history_id()
    assert len(first) == 32 and int(first, 16) >= 0
    twin = await backend.open()
    assert await twin.history_id() == first
    await store.close()
    again = await backend.open()
    assert await again.history_id() == first


async def test_confusable_usernames_refused(store: Store) -> None:
    """A name with the UTS #39 skeleton of an existing one is refused; the same name is Taken."""
    await users(store, "alice", "mary")
    for look_alike in ("аlice", "αlice", "a1ice", "rnary"):  # Cyrillic а, Greek α, digit 1, rn
        with pytest.raises(UsernameConfusable) as refused:
            await store.create_account(look_alike, "Mallory", "hash")
        assert "alice" not in refused.value.message.replace(look_alike, "")
        assert "mary" not in refused.value.message.replace(look_alike, "")
    with pytest.raises(UsernameTaken) as taken:
        await store.create_account("alice", "again", "hash")
    assert not isinstance(taken.value, UsernameConfusable)
    await users(store, "alicia", "bob")  # unrelated names are fine
    assert [a.username for a in await store.list_accounts()] == ["alice", "alicia", "bob", "mary"]


async def test_parallel_look_alikes_only_one_wins(backend: Backend, store: Store) -> None:
    """Look-alike names registered at once through two stores (two nodes): exactly one wins."""
    twin = await backend.open()
    names = ["alice", "аlice", "αlice", "a1ice", "alіce"]  # Latin, Cyrillic а, Greek, 1, і
    outcomes = await asyncio.gather(
        *(
            (store if i % 2 else twin).create_account(name, "x", "hash")
            for i, name in enumerate(names * 2)
        ),
        return_exceptions=True,
    )
    won = [o for o in outcomes if isinstance(o, Account)]
    assert len(won) == 1, outcomes
    assert all(isinstance(o, UsernameTaken) for o in outcomes if o not in won)
    assert [a.username for a in await store.list_accounts()] == [won[0].username]


async def _make_v2_database(backend: Backend, names: list[str]) -> None:
    """Create a schema-v2 database (as a server of the previous release left it) with users."""
    if backend.kind == "sqlite":
        conn = sqlite3.connect(backend.target, isolation_level=None)
        try:
            conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            for version in (1, 2):
                conn.executescript(schema.script(version, SQLITE))
                conn.execute("INSERT INTO schema_version VALUES (?)", (version,))
            conn.executemany(
                "INSERT INTO users (username, display_name, password_hash, created_ms)"
                " VALUES (?, ?, 'hash', 0)",
                [(n, n) for n in names],
            )
        finally:
            conn.close()
    else:
        pg = await asyncpg.connect(backend.target)
        try:
            await pg.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            for version in (1, 2):
                await pg.execute(schema.script(version, POSTGRES))
            await pg.execute("INSERT INTO schema_version VALUES (2)")
            await pg.executemany(
                "INSERT INTO users (username, display_name, password_hash, created_ms)"
                " VALUES ($1, $2, 'hash', 0)",
                [(n, n) for n in names],
            )
        finally:
            await pg.close()


async def test_migration_v2_to_v3_fills_skeletons_and_history_id(backend: Backend) -> None:
    """Opening a v2 database migrates it: skeletons of old names are filled (look-alikes of
    them refused), a history id exists, paging and sessions work."""
    await _make_v2_database(backend, ["alice", "bob", "carol"])
    store: Store = await backend.open()
    assert len(await store.history_id()) == 32
    with pytest.raises(UsernameConfusable):
        await store.create_account("аlice", "Mallory", "hash")
    assert [a.username for a in await store.list_accounts(after="alice", limit=1)] == ["bob"]
    if backend.kind == "sqlite":
        conn = sqlite3.connect(backend.target)
        try:
            rows = conn.execute("SELECT username, skeleton FROM users").fetchall()
            (version,) = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        finally:
            conn.close()
    else:
        pg = await asyncpg.connect(backend.target)
        try:
            rows = [tuple(r) for r in await pg.fetch("SELECT username, skeleton FROM users")]
            version = await pg.fetchval("SELECT max(version) FROM schema_version")
        finally:
            await pg.close()
    assert version == 3
    assert sorted(rows) == [(n, skeleton(n)) for n in ("alice", "bob", "carol")]


async def _make_v1_database(backend: Backend) -> None:
    """Create a schema-v1 database (``schema.script(1, …)``: accounts, sessions, direct
    messages, inboxes) holding alice → bob "old" (bob's sequence 1, unacked)."""
    statements = [
        "CREATE TABLE schema_version (version INTEGER NOT NULL)",
        *schema.script(1, SQLITE if backend.kind == "sqlite" else POSTGRES).split(";"),
        "INSERT INTO schema_version VALUES (1)",
        "INSERT INTO users (username, display_name, password_hash, created_ms, last_sequence)"
        " VALUES ('alice', 'Alice', 'hash', 0, 0), ('bob', 'Bob', 'hash', 0, 1)",
        "INSERT INTO messages (sender_id, recipient_id, client_id, body, sent_ms)"
        " SELECT a.id, b.id, 'old-1', 'old', 1700000000123 FROM users a, users b"
        " WHERE a.username = 'alice' AND b.username = 'bob'",
        "INSERT INTO inbox (user_id, sequence, message_id)"
        " SELECT recipient_id, 1, id FROM messages",
    ]
    statements = [s for s in statements if s.strip()]
    if backend.kind == "sqlite":
        conn = sqlite3.connect(backend.target, isolation_level=None)
        try:
            for statement in statements:
                conn.execute(statement)
        finally:
            conn.close()
    else:
        pg = await asyncpg.connect(backend.target)
        try:
            for statement in statements:
                await pg.execute(statement)
        finally:
            await pg.close()


async def test_migration_v1_to_current_keeps_messages_and_goes_on(backend: Backend) -> None:
    """Opening a v1 database migrates it through v2 and v3 (the same steps on both kinds):
    the old message replays as a direct text, has history, a resend is a duplicate, new
    messages take the next sequence and id, groups work, and version 3 is recorded."""
    await _make_v1_database(backend)
    store: Store = await backend.open()
    alice, bob = await store.get_account("alice"), await store.get_account("bob")
    assert alice is not None and bob is not None
    (old,) = await store.messages_after(bob, 0, 10)
    assert (old.sequence, old.sender, old.recipient, old.kind, old.group) == (
        1,
        "alice",
        "bob",
        EntryKind.TEXT,
        "",
    )
    assert (old.body, old.client_id) == ("old", "old-1")
    assert [
        m.body for m in await store.history(bob, peer=alice, group=None, before_id=2**62, limit=5)
    ] == ["old"]
    assert (await store.store_message(alice, bob, "old-1", "old", utc_now())).duplicate
    new = await store.store_message(alice, bob, "new-1", "new", utc_now())
    assert (new.entries[0].sequence, new.message_id > old.message_id) == (2, True)
    group, _ = await store.create_group("team", alice, [bob], utc_now())
    assert group.members == ("alice", "bob")
    assert len(await store.history_id()) == 32
    with pytest.raises(UsernameConfusable):
        await store.create_account("аlice", "Mallory", "hash")
    if backend.kind == "sqlite":
        conn = sqlite3.connect(backend.target)
        try:
            versions = [r[0] for r in conn.execute("SELECT version FROM schema_version")]
        finally:
            conn.close()
    else:
        pg = await asyncpg.connect(backend.target)
        try:
            versions = [r[0] for r in await pg.fetch("SELECT version FROM schema_version")]
        finally:
            await pg.close()
    assert sorted(versions) == [1, 2, 3]
