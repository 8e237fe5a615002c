"""SQLite store (the embedded default): one file in WAL mode with synchronous=FULL.

Writes go through one writer thread that commits *groups*: every write queued
while the previous commit was syncing runs in the next transaction, each in
its own savepoint, and one synced ``COMMIT`` makes the whole group durable
before any caller is answered. Reads use a second connection (WAL readers never
block the writer). See https://www.sqlite.org/wal.html and
https://www.sqlite.org/pragma.html#pragma_synchronous.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import secrets
import sqlite3
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from .errors import (
    GroupNameTaken,
    GroupNotFound,
    NotGroupMember,
    UsernameConfusable,
    UsernameTaken,
)
from .models import (
    Account,
    Appended,
    EntryKind,
    Group,
    GroupAction,
    InboxCursor,
    SessionInfo,
    StoredMessage,
    from_ms,
    to_ms,
    utc_now,
)
from .usernames import skeleton

log = logging.getLogger(__name__)
T = TypeVar("T")

SCHEMA_VERSION = 3
MAX_GROUP = 512  # writes per group commit
PRIVATE_DIR_MODE = 0o700  # a data directory this process creates: owner only
PRIVATE_FILE_MODE = 0o600  # database, -wal, -shm, lock, backup and export files: owner only
SIDECARS = ("-wal", "-shm", "-journal")  # files SQLite keeps next to a database

_SCHEMA_V1 = """
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    bot INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    last_sequence INTEGER NOT NULL DEFAULT 0,
    acked_sequence INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE sessions (
    token_hash BLOB PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    sender_id INTEGER NOT NULL REFERENCES users(id),
    recipient_id INTEGER NOT NULL REFERENCES users(id),
    client_id TEXT NOT NULL,
    body TEXT NOT NULL,
    sent_ms INTEGER NOT NULL,
    UNIQUE (sender_id, client_id)
);
CREATE TABLE inbox (
    user_id INTEGER NOT NULL REFERENCES users(id),
    sequence INTEGER NOT NULL,
    message_id INTEGER NOT NULL REFERENCES messages(id),
    PRIMARY KEY (user_id, sequence)
) WITHOUT ROWID;
CREATE INDEX inbox_message ON inbox(message_id);
"""

# v2: groups, inbox entry kinds (receipts, group updates), history indexes.
# messages is rebuilt because recipient_id becomes nullable (group messages).
_SCHEMA_V2 = """
CREATE TABLE groups (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL,
    created_by INTEGER REFERENCES users(id)
);
CREATE TABLE group_members (
    group_id INTEGER NOT NULL REFERENCES groups(id),
    user_id INTEGER NOT NULL REFERENCES users(id),
    joined_ms INTEGER NOT NULL,
    PRIMARY KEY (group_id, user_id)
) WITHOUT ROWID;
CREATE INDEX group_members_user ON group_members(user_id);
CREATE TABLE messages_v2 (
    id INTEGER PRIMARY KEY,
    kind INTEGER NOT NULL DEFAULT 0,
    sender_id INTEGER NOT NULL REFERENCES users(id),
    recipient_id INTEGER REFERENCES users(id),
    group_id INTEGER REFERENCES groups(id),
    client_id TEXT NOT NULL,
    body TEXT NOT NULL,
    sent_ms INTEGER NOT NULL,
    ref_message_id INTEGER,
    meta TEXT,
    UNIQUE (sender_id, client_id)
);
INSERT INTO messages_v2 (id, kind, sender_id, recipient_id, client_id, body, sent_ms)
    SELECT id, 0, sender_id, recipient_id, client_id, body, sent_ms FROM messages;
DROP TABLE messages;
ALTER TABLE messages_v2 RENAME TO messages;
CREATE INDEX messages_direct ON messages(sender_id, recipient_id, id)
    WHERE group_id IS NULL AND kind = 0;
CREATE INDEX messages_group ON messages(group_id, id) WHERE group_id IS NOT NULL AND kind = 0
"""

# v3: the history id (meta table) and the UTS #39 skeleton of each username
# (filled for existing rows by _fill_v3).
_SCHEMA_V3 = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
ALTER TABLE users ADD COLUMN skeleton TEXT NOT NULL DEFAULT '';
CREATE INDEX users_skeleton ON users(skeleton)
"""

_MIGRATIONS: dict[int, str] = {1: _SCHEMA_V1, 2: _SCHEMA_V2, 3: _SCHEMA_V3}


def new_history_id() -> str:
    """A fresh random history id: 16 random bytes as 32 hex digits."""
    return secrets.token_hex(16)


def set_history_id(conn: sqlite3.Connection, history_id: str | None = None) -> str:
    """Give the (schema v3+) database ``conn`` a new history id; returns it.

    Used when the schema is created and by restore and import, whose result is
    a different history than the database the data came from.
    """
    value = history_id or new_history_id()
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('history_id', ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (value,),
    )
    return value


def _fill_v3(conn: sqlite3.Connection) -> None:
    """Migration v2 → v3, data part: a history id and every username's skeleton."""
    set_history_id(conn)
    rows = conn.execute("SELECT id, username FROM users").fetchall()
    conn.executemany(
        "UPDATE users SET skeleton = ? WHERE id = ?", [(skeleton(n), i) for i, n in rows]
    )


_FILLS: dict[int, Callable[[sqlite3.Connection], None]] = {3: _fill_v3}

_ACCOUNT_COLS = "id, username, display_name, password_hash, bot, created_ms"
_SENDER_COLS = "s.id, s.username, s.display_name, s.password_hash, s.bot, s.created_ms"
_ENTRY_COLS = """m.id, s.username, s.display_name, m.body, m.sent_ms, m.client_id, m.kind,
    g.name, m.ref_message_id, m.meta"""
_MESSAGE_SELECT = f"""
SELECT i.sequence, r.username, {_ENTRY_COLS}
FROM inbox i
JOIN messages m ON m.id = i.message_id
JOIN users s ON s.id = m.sender_id
JOIN users r ON r.id = i.user_id
LEFT JOIN groups g ON g.id = m.group_id
"""
_HISTORY_SELECT = f"""
SELECT 0, coalesce(r.username, ''), {_ENTRY_COLS}
FROM messages m
JOIN users s ON s.id = m.sender_id
LEFT JOIN users r ON r.id = m.recipient_id
LEFT JOIN groups g ON g.id = m.group_id
"""


def make_private_dir(directory: Path) -> None:
    """Create ``directory`` (and missing parents) with mode 0700 for the new folder.

    The database holds every password hash and message, so other local users
    must not read it. An existing folder keeps its mode (it may be shared on
    purpose); a warning names it if others can enter it.
    """
    if not directory.exists():
        directory.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    elif directory.stat().st_mode & 0o077:
        log.warning(
            "the data directory %s is accessible to other users (mode %o); chmod 700 it",
            directory,
            directory.stat().st_mode & 0o777,
        )


def create_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if missing; set 0600 on an existing file.

    Created with ``os.open(..., 0o600)``, so the file is never readable by others,
    not even for a moment; SQLite gives its ``-wal``/``-shm``/``-journal`` files the
    mode of the database file.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
    finally:
        os.close(fd)


def secure_database_files(path: Path) -> None:
    """Make the database's folder (if new) 0700 and the database and its sidecars 0600."""
    make_private_dir(path.parent)
    create_private_file(path)
    for suffix in SIDECARS:
        sidecar = path.with_name(path.name + suffix)
        if sidecar.exists():
            sidecar.chmod(PRIVATE_FILE_MODE)


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _account(row: tuple[Any, ...]) -> Account:
    return Account(
        id=row[0],
        username=row[1],
        display_name=row[2],
        password_hash=row[3],
        bot=bool(row[4]),
        created_at=from_ms(row[5]),
    )


def _message(row: tuple[Any, ...]) -> StoredMessage:
    """Row of _MESSAGE_SELECT/_HISTORY_SELECT → StoredMessage."""
    (seq, recipient, mid, sender, sender_name, body, sent_ms, client_id, kind, group, ref, meta) = (
        row
    )
    info = json.loads(meta) if meta else {}
    entry_kind = EntryKind(kind)
    return StoredMessage(
        sequence=seq,
        message_id=mid,
        sender=sender,
        sender_display_name=sender_name,
        recipient=recipient,
        body=body,
        sent_at=from_ms(sent_ms),
        client_id=info.get("client_id", "") if entry_kind is EntryKind.RECEIPT else client_id,
        kind=entry_kind,
        group=group or "",
        ref_message_id=ref or 0,
        action=GroupAction(info["action"]) if "action" in info else None,
        members=tuple(info.get("members", ())),
    )


def _confusable(username: str) -> UsernameConfusable:
    return UsernameConfusable(
        f"The username '{username}' is too similar to an existing username; choose another."
    )


def _group(conn: sqlite3.Connection, name: str) -> Group | None:
    row = conn.execute("SELECT id, name, created_ms FROM groups WHERE name = ?", (name,)).fetchone()
    if row is None:
        return None
    members = conn.execute(
        "SELECT u.username FROM group_members gm JOIN users u ON u.id = gm.user_id"
        " WHERE gm.group_id = ? ORDER BY u.username",
        (row[0],),
    ).fetchall()
    return Group(row[0], row[1], tuple(m[0] for m in members), from_ms(row[2]))


def _member_group(conn: sqlite3.Connection, name: str, account: Account) -> Group:
    group = _group(conn, name)
    if group is None:
        raise GroupNotFound(f"The group '#{name}' does not exist.")
    if account.username not in group.members:
        raise NotGroupMember(f"You are not a member of '#{name}'.")
    return group


def _accounts_by_name(conn: sqlite3.Connection, names: tuple[str, ...]) -> list[Account]:
    if not names:
        return []
    marks = ",".join("?" * len(names))
    rows = conn.execute(
        f"SELECT {_ACCOUNT_COLS} FROM users WHERE username IN ({marks}) ORDER BY username", names
    ).fetchall()
    return [_account(r) for r in rows]


def _append(
    conn: sqlite3.Connection,
    *,
    sender: Account,
    targets: list[Account],
    client_id: str,
    body: str,
    sent_ms: int,
    kind: EntryKind = EntryKind.TEXT,
    recipient: Account | None = None,
    group: Group | None = None,
    ref_message_id: int | None = None,
    meta: dict[str, Any] | None = None,
) -> Appended:
    """Store one message and an inbox entry per target; idempotent per (sender, client_id)."""
    row = conn.execute(
        "SELECT id, sent_ms FROM messages WHERE sender_id = ? AND client_id = ?",
        (sender.id, client_id),
    ).fetchone()
    if row is not None:
        rows = conn.execute(
            _MESSAGE_SELECT + " WHERE i.message_id = ? ORDER BY i.user_id", (row[0],)
        ).fetchall()
        return Appended(row[0], from_ms(row[1]), [_message(r) for r in rows], True)
    meta_text = json.dumps(meta) if meta else None
    cur = conn.execute(
        "INSERT INTO messages (kind, sender_id, recipient_id, group_id, client_id, body, sent_ms,"
        " ref_message_id, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            int(kind),
            sender.id,
            recipient.id if recipient else None,
            group.id if group else None,
            client_id,
            body,
            sent_ms,
            ref_message_id,
            meta_text,
        ),
    )
    message_id = cur.lastrowid
    assert message_id is not None
    entries = []
    for target in targets:
        (sequence,) = conn.execute(
            "UPDATE users SET last_sequence = last_sequence + 1 WHERE id = ?"
            " RETURNING last_sequence",
            (target.id,),
        ).fetchone()
        conn.execute(
            "INSERT INTO inbox (user_id, sequence, message_id) VALUES (?, ?, ?)",
            (target.id, sequence, message_id),
        )
        entries.append(
            _message(
                (
                    sequence,
                    target.username,
                    message_id,
                    sender.username,
                    sender.display_name,
                    body,
                    sent_ms,
                    client_id,
                    int(kind),
                    group.name if group else None,
                    ref_message_id,
                    meta_text,
                )
            )
        )
    return Appended(message_id, from_ms(sent_ms), entries, False)


def _announce(
    conn: sqlite3.Connection,
    group: Group,
    actor: Account,
    action: GroupAction,
    members: tuple[str, ...],
    audience: tuple[str, ...],
    at_ms: int,
) -> Appended:
    """Store a GROUP_UPDATE entry in the inbox of every user in ``audience``."""
    return _append(
        conn,
        sender=actor,
        targets=_accounts_by_name(conn, audience),
        client_id=f"~group:{group.id}:{uuid.uuid4().hex}",
        body="",
        sent_ms=at_ms,
        kind=EntryKind.GROUP_UPDATE,
        group=group,
        meta={"action": str(action), "members": list(members)},
    )


class _GroupCommitWriter:
    """One thread, one connection; runs queued write functions in group commits."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._jobs: queue.SimpleQueue[tuple[Callable[[sqlite3.Connection], Any], Any] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name="sqlite-writer", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.commits = 0  # number of group commits, for metrics and tests

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread.start()

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Queue ``fn(conn)`` for the next group now; the future resolves after its synced
        commit. Jobs run in submission order."""
        assert self._loop is not None
        fut: asyncio.Future[T] = self._loop.create_future()
        self._jobs.put((fn, fut))
        return fut

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` inside the next group; returns after the group's synced commit."""
        return await self.submit(fn)

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=30)

    def _resolve(self, fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
        if fut.done():
            return
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)

    def _run(self) -> None:
        conn = _connect(self._path)
        stopping = False
        try:
            while not stopping:
                job = self._jobs.get()
                if job is None:
                    break
                batch = [job]
                while len(batch) < MAX_GROUP:
                    try:
                        more = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stopping = True
                        break
                    batch.append(more)
                self._commit_group(conn, batch)
        finally:
            conn.close()

    def _commit_group(
        self, conn: sqlite3.Connection, batch: list[tuple[Callable[[sqlite3.Connection], Any], Any]]
    ) -> None:
        assert self._loop is not None
        outcomes: list[tuple[Any, Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for fn, fut in batch:
                conn.execute("SAVEPOINT job")
                try:
                    result = fn(conn)
                except Exception as exc:  # the job's own failure: undo only this job
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    outcomes.append((fut, None, exc))
                else:
                    conn.execute("RELEASE job")
                    outcomes.append((fut, result, None))
            conn.execute("COMMIT")
            self.commits += 1
        except Exception as exc:  # the commit itself failed: nobody's write is durable
            log.exception("group commit failed")
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            outcomes = [(fut, None, exc) for _, fut in batch]
        for fut, result, error in outcomes:
            self._loop.call_soon_threadsafe(self._resolve, fut, result, error)


class SqliteStore:
    """The :class:`~hubbub.server.store.Store` on one SQLite file.

    Args:
        path: database file; parent directories are created. ``synchronous=FULL``
            means a committed write survives a process crash and a power loss.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._writer = _GroupCommitWriter(str(self.path))
        self._local = threading.local()
        self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sqlite-reader")
        self._reader_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._history_id: str | None = None

    @property
    def group_commits(self) -> int:
        """How many group commits the writer has made (each one fsync of the WAL)."""
        return self._writer.commits

    async def open(self) -> None:
        """Create the file and schema if needed, run migrations, start the writer thread.

        The folder is created 0700 and the files are (made) 0600 (:func:`secure_database_files`).
        """
        await asyncio.to_thread(self._migrate)
        self._writer.start(asyncio.get_running_loop())

    def _migrate(self) -> None:
        secure_database_files(self.path)
        conn = _connect(str(self.path))
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            current = row[0] or 0
            if current > SCHEMA_VERSION:
                raise RuntimeError(
                    f"database schema version {current} is newer than this server "
                    f"({SCHEMA_VERSION}); upgrade hubbub-server"
                )
            conn.execute(
                "PRAGMA foreign_keys=OFF"
            )  # tables are rebuilt (sqlite.org/lang_altertable)
            for version in range(current + 1, SCHEMA_VERSION + 1):
                conn.execute("BEGIN IMMEDIATE")
                for statement in _MIGRATIONS[version].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                if version in _FILLS:
                    _FILLS[version](conn)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
                problems = conn.execute("PRAGMA foreign_key_check").fetchall()
                if problems:
                    conn.execute("ROLLBACK")
                    raise RuntimeError(
                        f"migration to v{version} broke foreign keys: {problems[:3]}"
                    )
                conn.execute("COMMIT")
                log.info("database migrated to schema version %d", version)
        finally:
            conn.close()

    async def history_id(self) -> str:
        """The database's history id (see :meth:`Store.history_id`)."""

        def select(conn: sqlite3.Connection) -> str:
            row = conn.execute("SELECT value FROM meta WHERE key = 'history_id'").fetchone()
            if row is None:
                raise RuntimeError(f"{self.path} has no history id")
            return str(row[0])

        if self._history_id is None:
            self._history_id = await self._read(select)
        return self._history_id

    async def close(self) -> None:
        """Stop the writer after its queued writes and close the readers."""
        await asyncio.to_thread(self._writer.stop)
        self._readers.shutdown(wait=True)
        with self._lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._read_in_thread, fn)

    def _read_in_thread(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(str(self.path))
            self._local.conn = conn
            with self._lock:
                self._reader_conns.append(conn)
        return fn(conn)

    # -- accounts -----------------------------------------------------------------

    async def create_account(
        self, username: str, display_name: str, password_hash: str, *, bot: bool = False
    ) -> Account:
        """Insert an account. Raises UsernameTaken if ``username`` exists."""
        created = utc_now()

        shape = skeleton(username)

        def insert(conn: sqlite3.Connection) -> Account:
            # One writer thread: the check and the insert cannot interleave with another.
            if (
                conn.execute(
                    "SELECT 1 FROM users WHERE skeleton = ? AND username != ?", (shape, username)
                ).fetchone()
                and not conn.execute(
                    "SELECT 1 FROM users WHERE username = ?", (username,)
                ).fetchone()
            ):
                raise _confusable(username)
            try:
                cur = conn.execute(
                    "INSERT INTO users (username, display_name, password_hash, bot, created_ms,"
                    " skeleton) VALUES (?, ?, ?, ?, ?, ?)",
                    (username, display_name, password_hash, int(bot), to_ms(created), shape),
                )
            except sqlite3.IntegrityError:
                raise UsernameTaken(f"The username '{username}' is already taken.") from None
            assert cur.lastrowid is not None
            return Account(cur.lastrowid, username, display_name, password_hash, bot, created)

        return await self._writer.run(insert)

    async def get_account(self, username: str) -> Account | None:
        """The account named ``username`` (canonical), or None."""

        def select(conn: sqlite3.Connection) -> Account | None:
            row = conn.execute(
                f"SELECT {_ACCOUNT_COLS} FROM users WHERE username = ?", (username,)
            ).fetchone()
            return _account(row) if row else None

        return await self._read(select)

    async def list_accounts(self, after: str = "", limit: int = 0) -> list[Account]:
        """Accounts named after ``after``, sorted by username, at most ``limit`` (0: all)."""

        def select(conn: sqlite3.Connection) -> list[Account]:
            rows = conn.execute(
                f"SELECT {_ACCOUNT_COLS} FROM users WHERE username > ? ORDER BY username LIMIT ?",
                (after, limit if limit > 0 else -1),
            ).fetchall()
            return [_account(r) for r in rows]

        return await self._read(select)

    # -- sessions -----------------------------------------------------------------

    async def create_session(
        self, token_hash: bytes, account_id: int, expires_at: datetime
    ) -> None:
        """Store a session keyed by the token's hash."""
        now_ms = to_ms(utc_now())

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM sessions WHERE expires_ms < ?", (now_ms,))
            conn.execute(
                "INSERT INTO sessions (token_hash, user_id, created_ms, expires_ms)"
                " VALUES (?, ?, ?, ?)",
                (token_hash, account_id, now_ms, to_ms(expires_at)),
            )

        await self._writer.run(insert)

    async def get_session(self, token_hash: bytes, now: datetime) -> SessionInfo | None:
        """The account and expiry of an unexpired session, or None."""

        def select(conn: sqlite3.Connection) -> SessionInfo | None:
            row = conn.execute(
                f"SELECT {_SENDER_COLS}, x.expires_ms FROM sessions x"
                " JOIN users s ON s.id = x.user_id WHERE x.token_hash = ? AND x.expires_ms > ?",
                (token_hash, to_ms(now)),
            ).fetchone()
            return SessionInfo(_account(row[:6]), from_ms(row[6])) if row else None

        return await self._read(select)

    async def delete_session(self, token_hash: bytes) -> None:
        """Revoke the session with this token hash."""

        def delete(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))

        await self._writer.run(delete)

    async def update_account(
        self,
        account: Account,
        *,
        display_name: str | None = None,
        password_hash: str | None = None,
        keep_session: bytes | None = None,
    ) -> Account:
        """Change display name and/or password hash; a new password revokes other sessions."""

        def update(conn: sqlite3.Connection) -> Account:
            if display_name is not None:
                conn.execute(
                    "UPDATE users SET display_name = ? WHERE id = ?", (display_name, account.id)
                )
            if password_hash is not None:
                conn.execute(
                    "UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, account.id)
                )
                conn.execute(
                    "DELETE FROM sessions WHERE user_id = ? AND token_hash IS NOT ?",
                    (account.id, keep_session),
                )
            row = conn.execute(
                f"SELECT {_ACCOUNT_COLS} FROM users WHERE id = ?", (account.id,)
            ).fetchone()
            return _account(row)

        return await self._writer.run(update)

    # -- inbox --------------------------------------------------------------------

    def store_message(
        self, sender: Account, recipient: Account, client_id: str, body: str, sent_at: datetime
    ) -> asyncio.Future[Appended]:
        """Queue a direct message for the recipient's inbox; idempotent per client id."""

        def insert(conn: sqlite3.Connection) -> Appended:
            return _append(
                conn,
                sender=sender,
                targets=[recipient],
                client_id=client_id,
                body=body,
                sent_ms=to_ms(sent_at),
                recipient=recipient,
            )

        return self._writer.submit(insert)

    def store_group_message(
        self, sender: Account, group: str, client_id: str, body: str, sent_at: datetime
    ) -> asyncio.Future[Appended]:
        """Queue a message for every other member's inbox; idempotent per client id."""

        def insert(conn: sqlite3.Connection) -> Appended:
            found = _member_group(conn, group, sender)
            others = tuple(m for m in found.members if m != sender.username)
            return _append(
                conn,
                sender=sender,
                targets=_accounts_by_name(conn, others),
                client_id=client_id,
                body=body,
                sent_ms=to_ms(sent_at),
                group=found,
            )

        return self._writer.submit(insert)

    async def messages_after(
        self, account: Account, after_sequence: int, limit: int
    ) -> list[StoredMessage]:
        """Inbox entries after ``after_sequence``, oldest first, at most ``limit``."""

        def select(conn: sqlite3.Connection) -> list[StoredMessage]:
            rows = conn.execute(
                _MESSAGE_SELECT + " WHERE i.user_id = ? AND i.sequence > ?"
                " ORDER BY i.sequence LIMIT ?",
                (account.id, after_sequence, limit),
            ).fetchall()
            return [_message(r) for r in rows]

        return await self._read(select)

    async def cursor(self, account: Account) -> InboxCursor:
        """Last stored and last acknowledged sequence of the account's inbox."""

        def select(conn: sqlite3.Connection) -> InboxCursor:
            row = conn.execute(
                "SELECT last_sequence, acked_sequence FROM users WHERE id = ?", (account.id,)
            ).fetchone()
            return InboxCursor(row[0], row[1]) if row else InboxCursor(0, 0)

        return await self._read(select)

    async def ack(self, account: Account, sequence: int, at: datetime) -> list[StoredMessage]:
        """Raise the acked cursor (capped at the last stored one); store delivery receipts."""

        def update(conn: sqlite3.Connection) -> list[StoredMessage]:
            acked, last = conn.execute(
                "SELECT acked_sequence, last_sequence FROM users WHERE id = ?", (account.id,)
            ).fetchone()
            new = min(sequence, last)
            if new <= acked:
                return []
            conn.execute("UPDATE users SET acked_sequence = ? WHERE id = ?", (new, account.id))
            delivered = conn.execute(
                f"SELECT m.id, m.client_id, {_SENDER_COLS}"
                " FROM inbox i JOIN messages m ON m.id = i.message_id"
                " JOIN users s ON s.id = m.sender_id"
                " WHERE i.user_id = ? AND i.sequence > ? AND i.sequence <= ?"
                " AND m.kind = 0 AND m.group_id IS NULL AND s.bot = 0 AND s.id != ?"
                " ORDER BY i.sequence",
                (account.id, acked, new, account.id),
            ).fetchall()
            receipts: list[StoredMessage] = []
            for message_id, client_id, *sender_row in delivered:
                appended = _append(
                    conn,
                    sender=account,
                    targets=[_account(tuple(sender_row))],
                    client_id=f"~receipt:{message_id}",
                    body="",
                    sent_ms=to_ms(at),
                    kind=EntryKind.RECEIPT,
                    ref_message_id=message_id,
                    meta={"client_id": client_id},
                )
                if not appended.duplicate:
                    receipts += appended.entries
            return receipts

        return await self._writer.run(update)

    # -- groups -------------------------------------------------------------------

    async def create_group(
        self, name: str, creator: Account, members: list[Account], at: datetime
    ) -> tuple[Group, Appended]:
        """Create the group and announce it to its members."""
        at_ms = to_ms(at)

        def insert(conn: sqlite3.Connection) -> tuple[Group, Appended]:
            try:
                cur = conn.execute(
                    "INSERT INTO groups (name, created_ms, created_by) VALUES (?, ?, ?)",
                    (name, at_ms, creator.id),
                )
            except sqlite3.IntegrityError:
                raise GroupNameTaken(f"The group name '#{name}' is already taken.") from None
            group_id = cur.lastrowid
            everyone = {a.id: a for a in [creator, *members]}
            conn.executemany(
                "INSERT INTO group_members (group_id, user_id, joined_ms) VALUES (?, ?, ?)",
                [(group_id, uid, at_ms) for uid in everyone],
            )
            group = _group(conn, name)
            assert group is not None
            update = _announce(
                conn, group, creator, GroupAction.CREATED, group.members, group.members, at_ms
            )
            return group, update

        return await self._writer.run(insert)

    async def add_members(
        self, name: str, actor: Account, members: list[Account], at: datetime
    ) -> tuple[Group, Appended | None]:
        """Add members (a member must ask) and announce the newcomers."""
        at_ms = to_ms(at)

        def insert(conn: sqlite3.Connection) -> tuple[Group, Appended | None]:
            group = _member_group(conn, name, actor)
            new = [a for a in members if a.username not in group.members]
            if not new:
                return group, None
            conn.executemany(
                "INSERT INTO group_members (group_id, user_id, joined_ms) VALUES (?, ?, ?)",
                [(group.id, a.id, at_ms) for a in {a.id: a for a in new}.values()],
            )
            after = _group(conn, name)
            assert after is not None
            added = tuple(sorted({a.username for a in new}))
            update = _announce(
                conn, after, actor, GroupAction.MEMBERS_ADDED, added, after.members, at_ms
            )
            return after, update

        return await self._writer.run(insert)

    async def leave_group(self, name: str, account: Account, at: datetime) -> Appended:
        """Remove the member and announce it to the group and to the leaver."""
        at_ms = to_ms(at)

        def delete(conn: sqlite3.Connection) -> Appended:
            group = _member_group(conn, name, account)
            conn.execute(
                "DELETE FROM group_members WHERE group_id = ? AND user_id = ?",
                (group.id, account.id),
            )
            return _announce(
                conn,
                group,
                account,
                GroupAction.MEMBERS_LEFT,
                (account.username,),
                group.members,
                at_ms,
            )

        return await self._writer.run(delete)

    async def get_group(self, name: str) -> Group | None:
        """The group named ``name``, or None."""
        return await self._read(lambda conn: _group(conn, name))

    async def list_groups(self, account: Account) -> list[Group]:
        """The account's groups sorted by name."""

        def select(conn: sqlite3.Connection) -> list[Group]:
            names = conn.execute(
                "SELECT g.name FROM groups g JOIN group_members gm ON gm.group_id = g.id"
                " WHERE gm.user_id = ? ORDER BY g.name",
                (account.id,),
            ).fetchall()
            groups = [_group(conn, n[0]) for n in names]
            return [g for g in groups if g is not None]

        return await self._read(select)

    async def history(
        self,
        account: Account,
        *,
        peer: Account | None,
        group: str | None,
        before_id: int,
        limit: int,
    ) -> list[StoredMessage]:
        """Text messages of a direct or group conversation, newest first."""

        def select(conn: sqlite3.Connection) -> list[StoredMessage]:
            if group is not None:
                found = _member_group(conn, group, account)
                rows = conn.execute(
                    _HISTORY_SELECT + " WHERE m.group_id = ? AND m.kind = 0 AND m.id < ?"
                    " ORDER BY m.id DESC LIMIT ?",
                    (found.id, before_id, limit),
                ).fetchall()
            else:
                assert peer is not None
                rows = conn.execute(
                    _HISTORY_SELECT + " WHERE m.id IN ("
                    " SELECT id FROM messages WHERE sender_id = ? AND recipient_id = ?"
                    "  AND group_id IS NULL AND kind = 0 AND id < ?"
                    " UNION ALL"
                    " SELECT id FROM messages WHERE sender_id = ? AND recipient_id = ?"
                    "  AND group_id IS NULL AND kind = 0 AND id < ?)"
                    " ORDER BY m.id DESC LIMIT ?",
                    (account.id, peer.id, before_id, peer.id, account.id, before_id, limit),
                ).fetchall()
            return [_message(r) for r in rows]

        return await self._read(select)
