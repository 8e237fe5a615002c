"""Integration tests of backup/restore (SQLite Online Backup API) and JSON export/import."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import argon2
import pytest

from hubbub.server import backup as bk
from hubbub.server.config import ServerConfig
from hubbub.server.schema import MIGRATIONS, SCHEMA_VERSION, script
from hubbub.server.sql import SQLITE
from hubbub.v1 import messenger_pb2 as pb

from .conftest import PASSWORD, Node, auth, close_node, open_chat, open_node, register_login

pytestmark = pytest.mark.timeout(90)
HUBBUB_SERVER = str(Path(sys.executable).parent / "hubbub-server")
NodeFactory = Callable[..., Awaitable[Node]]


# -- helpers ---------------------------------------------------------------------------


def files_of(db: Path) -> dict[str, bytes]:
    """Every file of the database (main file and any -wal/-shm/-journal) by name → bytes."""
    return {p.name: p.read_bytes() for p in sorted(db.parent.glob(db.name + "*"))}


def leftovers(directory: Path, pattern: str) -> list[Path]:
    """Files in ``directory`` matching ``pattern``."""
    return list(directory.glob(pattern))


def one_line(message: str) -> str:
    """Assert ``message`` is a single non-empty line and return it."""
    assert message and "\n" not in message, repr(message)
    return message


async def start_on(database: Path) -> Node:
    """An in-process server on ``database`` (stop it with ``close_node``)."""
    return await open_node(
        ServerConfig(host="127.0.0.1", port=0, database=str(database), grace_s=1.0)
    )


async def login(node: Node, username: str, password: str = PASSWORD) -> str:
    """Log in and return the token."""
    reply = await node.stub.Login(pb.LoginRequest(username=username, password=password))
    return reply.token


async def replay(node: Node, token: str, after: int | None = None) -> tuple[int, list[Any]]:
    """Open Chat, resume after ``after`` (None = the acked cursor), collect inbox entries
    until Synced; returns (Welcome.acked_sequence, entries as comparable tuples)."""
    chat = await open_chat(node, token, after=after)
    acked = chat.seen[0].welcome.acked_sequence
    entries: list[Any] = []
    while True:
        event = await chat.next()
        kind = event.WhichOneof("event")
        if kind == "synced":
            break
        if kind == "message":
            m = event.message
            entries.append(
                (
                    m.sequence,
                    "message",
                    m.message_id,
                    m.sender,
                    m.recipient,
                    m.group,
                    m.client_id,
                    m.body,
                    m.send_time.ToMilliseconds(),
                    m.sender_display_name,
                )
            )
        elif kind == "delivery_receipt":
            r = event.delivery_receipt
            entries.append(
                (
                    r.sequence,
                    "receipt",
                    r.message_id,
                    r.client_id,
                    r.recipient,
                    r.delivery_time.ToMilliseconds(),
                    tuple(r.message_ids),
                    tuple(r.client_ids),
                )
            )
        elif kind == "group_update":
            u = event.group_update
            entries.append(
                (
                    u.sequence,
                    "group",
                    u.group,
                    u.action,
                    u.actor,
                    tuple(u.members),
                    u.update_time.ToMilliseconds(),
                )
            )
    await chat.close()
    await asyncio.sleep(0.2)  # let the server notice the cancelled stream (one stream per user)
    return acked, entries


async def populate(node: Node) -> dict[str, str]:
    """alice, bob, carol with a group, direct messages, acks, receipts and echobot traffic.

    Returns the tokens. Leaves some entries acknowledged and some not.
    """
    tokens = {name: await register_login(node, name, name.title()) for name in ("alice", "bob")}
    tokens["carol"] = await register_login(node, "carol")
    await node.stub.CreateGroup(
        pb.CreateGroupRequest(name="team", members=["bob", "carol"]), metadata=auth(tokens["alice"])
    )
    a = await open_chat(node, tokens["alice"])
    b = await open_chat(node, tokens["bob"])
    for i in range(4):
        await a.send("bob", f"direct {i} ✓", f"d{i}")
        await a.next("send_result")
    await a.write(pb.ChatRequest(send=pb.SendMessage(client_id="g0", group="team", body="all")))
    await a.next("send_result")
    await a.send("echobot", "ping", "e0")  # echobot answers and acks: a receipt for alice
    await a.next("send_result")
    assert (await a.next("message")).message.body == "ping"
    await a.next("delivery_receipt")
    received = await b.messages(3)
    await b.write(pb.ChatRequest(ack=pb.Ack(sequence=received[-1].sequence)))
    # bob's one ack over three of alice's messages: ONE cumulative receipt lists them all
    receipt = (await a.next("delivery_receipt")).delivery_receipt
    assert list(receipt.client_ids) == ["d0", "d1", "d2"]
    assert list(receipt.message_ids) == [m.message_id for m in received]
    await b.send("alice", "reply", "b0")
    await b.next("send_result")
    await a.close()
    await b.close()
    await asyncio.sleep(0.2)
    return tokens


def ack_cursor(database: Path, username: str) -> int:
    """The stored acked_sequence of ``username``."""
    with sqlite3.connect(database) as conn:
        (acked,) = conn.execute(
            "SELECT acked_sequence FROM users WHERE username = ?", (username,)
        ).fetchone()
    conn.close()
    return int(acked)


# -- backup and restore ---------------------------------------------------------------------


async def test_backup_under_live_traffic_keeps_everything_acknowledged_before_it(
    node_factory: NodeFactory, db_path: Path, tmp_path: Path
) -> None:
    """A backup taken by `hubbub-server backup` while sends go on holds every acknowledged send,
    cursor, group and password, restores into a working server, and never stalls the sender."""
    node = await node_factory()
    tokens = await populate(node)
    bob_acked = ack_cursor(db_path, "bob")
    assert bob_acked > 0
    a = await open_chat(node, tokens["alice"])
    acknowledged: list[tuple[float, str]] = []  # (monotonic time of its send_result, client id)
    stop = asyncio.Event()
    progressed = asyncio.Event()

    async def sent(n: int) -> None:
        while len(acknowledged) < n:
            progressed.clear()
            await progressed.wait()

    async def traffic() -> None:
        i = 0
        while not stop.is_set():
            cid = f"live-{i}"
            if i % 3 == 0:
                send = pb.SendMessage(client_id=cid, group="team", body=f"live {i}")
            else:
                send = pb.SendMessage(client_id=cid, recipient=("bob", "carol")[i % 2], body=cid)
            await a.write(pb.ChatRequest(send=send))
            result = (await a.next("send_result")).send_result
            assert result.client_id == cid and not result.duplicate
            acknowledged.append((time.monotonic(), cid))
            progressed.set()
            i += 1

    sender = asyncio.create_task(traffic())
    await sent(30)
    target = tmp_path / "backups" / "live.bak"
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        HUBBUB_SERVER,
        "backup",
        str(target),
        "--database",
        str(db_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    finished = time.monotonic()
    await sent(len(acknowledged) + 10)  # and the server still takes sends after the backup
    stop.set()
    await sender
    await a.close()

    assert proc.returncode == 0, err.decode()
    assert one_line(out.decode().strip()).startswith(f"backup of {db_path} written to {target}:")
    assert err == b""
    assert not target.with_name("live.bak.tmp").exists()
    before = {cid for at, cid in acknowledged if at < started}
    during = [cid for at, cid in acknowledged if started <= at <= finished]
    assert len(before) >= 30 and during, "sends must go on while the backup runs"

    restored = tmp_path / "restored" / "hubbub.db"
    result = bk.restore_database(target, restored)
    assert result.schema_version == SCHEMA_VERSION
    copy = await start_on(restored)
    try:
        new = {name: await login(copy, name) for name in ("alice", "bob", "carol")}
        groups = await copy.stub.ListGroups(pb.ListGroupsRequest(), metadata=auth(new["alice"]))
        assert [(g.name, list(g.members)) for g in groups.groups] == [
            ("team", ["alice", "bob", "carol"])
        ]
        acked, _ = await replay(copy, new["bob"])
        assert acked == bob_acked
        seen: set[str] = set()
        for name in ("bob", "carol"):
            _, entries = await replay(copy, new[name], after=0)
            seen |= {e[6] for e in entries if e[1] == "message"}
            assert [e[0] for e in entries] == list(range(1, len(entries) + 1))
        assert before <= seen, sorted(before - seen)[:5]
    finally:
        await close_node(copy)


async def test_restore_refuses_the_database_of_a_running_server(
    node_factory: NodeFactory, db_path: Path, tmp_path: Path
) -> None:
    """Restore and import into a running server's database are refused; its files stay as they
    were, byte for byte."""
    node = await node_factory()
    await register_login(node, "alice")
    good = tmp_path / "good.bak"
    bk.backup_database(db_path, good)
    export = tmp_path / "good.json"
    bk.export_database(db_path, export)
    assert bk.database_in_use(db_path)
    before = files_of(db_path)
    with pytest.raises(bk.DatabaseInUse) as info:
        bk.restore_database(good, db_path)
    assert "in use by a running hubbub-server" in one_line(str(info.value))
    with pytest.raises(bk.DatabaseInUse):
        bk.import_database(export, db_path)
    after = files_of(db_path)
    before.pop("hubbub.db-shm", None)  # the shared-memory index holds readers' marks only
    after.pop("hubbub.db-shm", None)
    assert after == before
    await register_login(node, "bob")  # and the server is still fine


def _random_bytes(good: Path, out: Path) -> None:
    out.write_bytes(os.urandom(64 * 1024))


def _truncated(good: Path, out: Path) -> None:
    data = good.read_bytes()
    out.write_bytes(data[: len(data) // 2])


def _empty(good: Path, out: Path) -> None:
    out.write_bytes(b"")


def _foreign_sqlite(good: Path, out: Path) -> None:
    with sqlite3.connect(out) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        conn.execute("INSERT INTO notes (text) VALUES ('hello')")
    conn.close()


def _altered(sql: str) -> Callable[[Path, Path], None]:
    def make(good: Path, out: Path) -> None:
        out.write_bytes(good.read_bytes())
        with sqlite3.connect(out) as conn:
            conn.executescript(sql)
        conn.close()

    return make


def _damaged_page(good: Path, out: Path) -> None:
    data = bytearray(good.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    for n in range(1, len(data) // page):  # scramble every page but the first (schema)
        start = n * page
        data[start + 8 : start + page] = bytes(reversed(data[start + 8 : start + page]))
    out.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_random_bytes, "is not an SQLite database"),
        (_empty, "is not an SQLite database"),
        (_truncated, "is not a usable SQLite database"),
        (_damaged_page, "(is damaged|is not a usable SQLite database)"),
        (_foreign_sqlite, "is not a Hubbub database"),
        (_altered("DELETE FROM schema_version"), "no schema version recorded"),
        (_altered("DROP TABLE inbox"), "without table"),
        (_altered("INSERT INTO schema_version VALUES (99)"), "newer than this hubbub-server"),
    ],
    ids=["random", "empty", "truncated", "damaged", "foreign", "unversioned", "partial", "newer"],
)
async def test_restore_refuses_a_corrupt_or_foreign_file(
    node_factory: NodeFactory,
    db_path: Path,
    tmp_path: Path,
    make: Callable[[Path, Path], None],
    reason: str,
) -> None:
    """A damaged, truncated, foreign, unversioned or too-new file is refused with one line,
    and the live (stopped) database is untouched, byte for byte."""
    node = await node_factory()
    await register_login(node, "alice")
    good = tmp_path / "good.bak"
    bk.backup_database(db_path, good)
    await close_node(node)
    bad = tmp_path / "bad.bak"
    make(good, bad)
    before = files_of(db_path)
    with pytest.raises(bk.BackupError, match=reason) as info:
        bk.restore_database(bad, db_path)
    one_line(str(info.value))
    assert files_of(db_path) == before
    assert not leftovers(tmp_path, "*.restore.tmp*")


async def test_restoring_an_older_schema_migrates_on_start(tmp_path: Path) -> None:
    """A schema v1 backup is accepted and migrated by the next server start (messages and
    passwords kept)."""
    old = tmp_path / "v1.bak"
    hashed = argon2.PasswordHasher().hash(PASSWORD)
    with sqlite3.connect(old) as conn:
        conn.executescript(script(1, SQLITE))
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (1)")
        conn.executemany(
            "INSERT INTO users (id, username, display_name, password_hash, created_ms,"
            " last_sequence) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (1, "alice", "Alice", hashed, 1_700_000_000_000, 0),
                (2, "bob", "Bob", hashed, 1_700_000_000_000, 1),
            ],
        )
        conn.execute(
            "INSERT INTO messages VALUES (7, 1, 2, 'old-1', 'from the old days', 1700000000123)"
        )
        conn.execute("INSERT INTO inbox VALUES (2, 1, 7)")
    conn.close()
    db = tmp_path / "live" / "hubbub.db"
    result = bk.restore_database(old, db)
    assert (result.schema_version, result.counts) == (1, bk.Counts(2, 0, 1, 1))
    node = await start_on(db)
    try:
        _, entries = await replay(node, await login(node, "bob"))
        assert entries == [
            (
                1,
                "message",
                7,
                "alice",
                "bob",
                "",
                "old-1",
                "from the old days",
                1700000000123,
                "Alice",
            )
        ]
    finally:
        await close_node(node)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == 3
    conn.close()


def stored_history_id(database: Path) -> str:
    """The history id stored in ``database``'s meta table."""
    with sqlite3.connect(database) as conn:
        (value,) = conn.execute("SELECT value FROM meta WHERE key = 'history_id'").fetchone()
    conn.close()
    return str(value)


async def test_restore_gives_the_database_a_new_history_id(
    node_factory: NodeFactory, db_path: Path, tmp_path: Path
) -> None:
    """A restored backup is another history than the live database that went on after the
    backup: restore gives it a new history id, which then stays stable across restarts."""
    node = await node_factory()
    await register_login(node, "alice")
    live = await node.server.store.history_id()
    assert stored_history_id(db_path) == live
    backup = tmp_path / "b.bak"
    bk.backup_database(db_path, backup)
    assert stored_history_id(backup) == live  # a backup is a copy...
    await close_node(node)
    bk.restore_database(backup, db_path)
    restored = stored_history_id(db_path)
    assert restored != live and len(restored) == 32  # ...and its restore a new history
    for _ in range(2):
        again = await start_on(db_path)
        try:
            assert await again.server.store.history_id() == restored
        finally:
            await close_node(again)


async def test_import_gives_the_database_a_new_history_id(
    node_factory: NodeFactory, db_path: Path, tmp_path: Path
) -> None:
    """Import makes a new history: the imported database's id differs from the exported
    one's, also when importing into an existing (server-created, empty) database."""
    node = await node_factory()
    await register_login(node, "alice")
    await close_node(node)
    exported = tmp_path / "e.json"
    bk.export_database(db_path, exported)
    fresh = tmp_path / "fresh" / "hubbub.db"
    bk.import_database(exported, fresh)
    assert stored_history_id(fresh) not in (stored_history_id(db_path), "")
    empty = tmp_path / "empty" / "hubbub.db"
    await close_node(await start_on(empty))
    before = stored_history_id(empty)
    bk.import_database(exported, empty)
    assert stored_history_id(empty) not in (before, stored_history_id(db_path))


def test_required_tables_cover_every_schema_version() -> None:
    """Restore knows the tables of every schema version the server can migrate from."""
    assert (
        set(bk.REQUIRED_TABLES)
        == set(range(1, SCHEMA_VERSION + 1))
        == {m.version for m in MIGRATIONS}
    )


# -- export and import --------------------------------------------------------------------------


async def test_export_import_round_trip_replays_exactly(
    node_factory: NodeFactory, db_path: Path, tmp_path: Path
) -> None:
    """Export (live) → import into a new database → start: old passwords log in; groups,
    cursors, inbox sequences and the unacknowledged replay are exactly as before."""
    node = await node_factory()
    tokens = await populate(node)
    names = ("alice", "bob", "carol", "echobot")
    full = {name: await replay(node, tokens[name], after=0) for name in names[:3]}
    groups = await node.stub.ListGroups(pb.ListGroupsRequest(), metadata=auth(tokens["carol"]))
    exported = tmp_path / "export" / "hubbub.json"
    counts = bk.export_database(db_path, exported)  # while the server runs
    document = json.loads(exported.read_text(encoding="utf-8"))
    assert (document["format"], document["version"]) == ("hubbub-export", 1)
    assert [u["username"] for u in document["users"]] == ["echobot", "alice", "bob", "carol"]
    assert all(u["password_hash"].startswith("$argon2id$") for u in document["users"][1:])
    assert counts == bk.Counts(4, 1, len(document["messages"]), len(document["inbox"]))
    assert counts.messages >= 10
    await close_node(node)

    target = tmp_path / "imported" / "hubbub.db"
    assert bk.import_database(exported, target) == counts
    again = tmp_path / "again.json"
    bk.export_database(target, again)
    second = json.loads(again.read_text(encoding="utf-8"))
    assert {**second, "exported_at": ""} == {**document, "exported_at": ""}

    copy = await start_on(target)
    try:
        for name in names[:3]:
            token = await login(copy, name)
            acked, entries = await replay(copy, token)  # the default resume: unacked only
            old_acked, old_entries = full[name]
            assert acked == old_acked
            assert entries == [e for e in old_entries if e[0] > old_acked]
            assert (await replay(copy, token, after=0))[1] == old_entries
        carol = await login(copy, "carol")
        assert await copy.stub.ListGroups(pb.ListGroupsRequest(), metadata=auth(carol)) == groups
        # the stored direct history and idempotency keys came along: a resend is a duplicate
        a = await open_chat(copy, await login(copy, "alice"))
        await a.send("bob", "direct 0 ✓", "d0")
        assert (await a.next("send_result")).send_result.duplicate
        await a.close()
    finally:
        await close_node(copy)


async def test_import_refuses_a_database_that_is_not_empty(
    node_factory: NodeFactory, db_path: Path, tmp_path: Path
) -> None:
    """Import into a database with users besides echobot is refused, the database untouched;
    a server-created database with only echobot is accepted."""
    node = await node_factory()
    await populate(node)
    exported = tmp_path / "e.json"
    bk.export_database(db_path, exported)
    await close_node(node)
    before = files_of(db_path)
    with pytest.raises(bk.BackupError, match="is not empty") as info:
        bk.import_database(exported, db_path)
    one_line(str(info.value))
    assert files_of(db_path) == before

    fresh = tmp_path / "fresh" / "hubbub.db"
    await close_node(await start_on(fresh))  # a new server made it: only echobot
    assert bk.import_database(exported, fresh).users == 4


def _doc(**changes: Any) -> Callable[[dict[str, Any]], Any]:
    def change(document: dict[str, Any]) -> Any:
        return {**document, **changes}

    return change


def _without(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda document: {k: v for k, v in document.items() if k != key}


def _edit(path: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    """Set document[a][i][b] for ``path`` "a.i.b"."""

    def change(document: dict[str, Any]) -> Any:
        copy = json.loads(json.dumps(document))
        *parents, last = path.split(".")
        node: Any = copy
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[last] = value
        return copy

    return change


@pytest.fixture(scope="module")
def valid_export(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The export document of a populated database (made once for the module)."""
    db = tmp_path_factory.mktemp("export") / "hubbub.db"

    async def make() -> dict[str, Any]:
        node = await start_on(db)
        try:
            await populate(node)
            bk.export_database(db, db.with_name("e.json"))
        finally:
            await close_node(node)
        return dict(json.loads(db.with_name("e.json").read_text(encoding="utf-8")))

    return asyncio.run(make())


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda d: [d], "must be a JSON object"),
        (_doc(format="slack-export"), "expected 'hubbub-export'"),
        (_without("format"), "expected 'hubbub-export'"),
        (_doc(version=2), "newer than this server reads"),
        (_without("users"), "missing key 'users'"),
        (_doc(messages={}), "messages: must be a list"),
        (_edit("users.1.password_hash", 42), r"users\[1\]\.password_hash"),
        (_edit("users.1.username", "Not Canonical!"), "not a canonical name"),
        (_edit("users.2.username", "alice"), "duplicate user"),
        (_edit("users.1.acked_sequence", 10**6), "must not exceed last_sequence"),
        (_edit("messages.0.sender", "ghost"), "unknown user 'ghost'"),
        (_edit("messages.0.kind", "fax"), "kind: must be one of"),
        (_edit("messages.0.sent_at", "yesterday"), "ISO 8601"),
        (_edit("inbox.0.message", 999999), "unknown message id"),
        (_edit("groups.0.members.0.username", "ghost"), "unknown user 'ghost'"),
    ],
    ids=[
        "not-object",
        "foreign-tag",
        "no-tag",
        "newer",
        "no-users",
        "messages-not-list",
        "hash-type",
        "bad-name",
        "dup-user",
        "acked-beyond",
        "unknown-sender",
        "unknown-kind",
        "bad-time",
        "dangling-inbox",
        "unknown-member",
    ],
)
async def test_import_refuses_malformed_json_and_writes_nothing(
    valid_export: dict[str, Any],
    tmp_path: Path,
    change: Callable[[dict[str, Any]], Any],
    reason: str,
) -> None:
    """A foreign, malformed or inconsistent export is refused with one line; a new target is
    not created and an existing empty one is untouched."""
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(change(valid_export)), encoding="utf-8")
    new = tmp_path / "new" / "hubbub.db"
    with pytest.raises(bk.ExportFormatError, match=reason) as info:
        bk.import_database(bad, new)
    assert one_line(str(info.value)).startswith(f"{bad}: not a valid Hubbub export: ")
    assert not new.exists()
    empty = tmp_path / "empty" / "hubbub.db"
    await close_node(await start_on(empty))
    before = files_of(empty)
    with pytest.raises(bk.ExportFormatError, match=reason):
        bk.import_database(bad, empty)
    assert files_of(empty) == before


async def test_import_refuses_text_that_is_not_json(tmp_path: Path) -> None:
    """Invalid JSON is refused with one line naming the position; nothing is created."""
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "hubbub-export",\n "version": 1,,}', encoding="utf-8")
    with pytest.raises(bk.ExportFormatError, match=r"is not valid JSON \(.*line 2") as info:
        bk.import_database(bad, tmp_path / "db" / "hubbub.db")
    one_line(str(info.value))
    assert not (tmp_path / "db" / "hubbub.db").exists()


async def test_in_process_servers_share_the_lock_until_the_last_one_stops(
    node_factory: NodeFactory, db_path: Path
) -> None:
    """In-process servers on one database share its lock; it is free once the last one stops."""
    first = await node_factory()
    second = await node_factory()
    await close_node(first)
    assert bk.database_in_use(db_path)
    await second.stub.Register(pb.RegisterRequest(username="zoe", password=PASSWORD))
    await close_node(second)
    assert not bk.database_in_use(db_path)
