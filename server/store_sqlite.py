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
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from .errors import UsernameTaken
from .models import Account, InboxCursor, StoredMessage, from_ms, to_ms, utc_now

log = logging.getLogger(__name__)
T = TypeVar("T")

SCHEMA_VERSION = 1
MAX_GROUP = 512  # writes per group commit

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

_MIGRATIONS: dict[int, str] = {1: _SCHEMA_V1}

_ACCOUNT_COLS = "id, username, display_name, password_hash, bot, created_ms"
_MESSAGE_SELECT = """
SELECT i.sequence, m.id, s.username, s.display_name, r.username, m.body, m.sent_ms, m.client_id
FROM inbox i
JOIN messages m ON m.id = i.message_id
JOIN users s ON s.id = m.sender_id
JOIN users r ON r.id = i.user_id
"""


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
    return StoredMessage(
        sequence=row[0],
        message_id=row[1],
        sender=row[2],
        sender_display_name=row[3],
        recipient=row[4],
        body=row[5],
        sent_at=from_ms(row[6]),
        client_id=row[7],
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

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` inside the next group; returns after the group's synced commit."""
        assert self._loop is not None
        fut: asyncio.Future[T] = self._loop.create_future()
        self._jobs.put((fn, fut))
        return await fut

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

    @property
    def group_commits(self) -> int:
        """How many group commits the writer has made (each one fsync of the WAL)."""
        return self._writer.commits

    async def open(self) -> None:
        """Create the file and schema if needed, run migrations, start the writer thread."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self._migrate)
        self._writer.start(asyncio.get_running_loop())

    def _migrate(self) -> None:
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
            for version in range(current + 1, SCHEMA_VERSION + 1):
                conn.execute("BEGIN IMMEDIATE")
                for statement in _MIGRATIONS[version].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
                conn.execute("COMMIT")
                log.info("database migrated to schema version %d", version)
        finally:
            conn.close()

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

        def insert(conn: sqlite3.Connection) -> Account:
            try:
                cur = conn.execute(
                    "INSERT INTO users (username, display_name, password_hash, bot, created_ms)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (username, display_name, password_hash, int(bot), to_ms(created)),
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

    async def list_accounts(self) -> list[Account]:
        """Every account sorted by username."""

        def select(conn: sqlite3.Connection) -> list[Account]:
            rows = conn.execute(f"SELECT {_ACCOUNT_COLS} FROM users ORDER BY username").fetchall()
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

    async def get_session(self, token_hash: bytes, now: datetime) -> Account | None:
        """The account of an unexpired session, or None."""

        def select(conn: sqlite3.Connection) -> Account | None:
            row = conn.execute(
                f"SELECT {', '.join('u.' + c.strip() for c in _ACCOUNT_COLS.split(','))}"
                " FROM sessions s JOIN users u ON u.id = s.user_id"
                " WHERE s.token_hash = ? AND s.expires_ms > ?",
                (token_hash, to_ms(now)),
            ).fetchone()
            return _account(row) if row else None

        return await self._read(select)

    async def delete_session(self, token_hash: bytes) -> None:
        """Revoke the session with this token hash."""

        def delete(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))

        await self._writer.run(delete)

    # -- inbox --------------------------------------------------------------------

    async def store_message(
        self,
        sender: Account,
        recipient: Account,
        client_id: str,
        body: str,
        sent_at: datetime,
    ) -> tuple[StoredMessage, bool]:
        """Append to the recipient's inbox at the next sequence; idempotent per client id."""

        def insert(conn: sqlite3.Connection) -> tuple[StoredMessage, bool]:
            row = conn.execute(
                _MESSAGE_SELECT + " WHERE m.sender_id = ? AND m.client_id = ?",
                (sender.id, client_id),
            ).fetchone()
            if row is not None:
                return _message(row), True
            (sequence,) = conn.execute(
                "UPDATE users SET last_sequence = last_sequence + 1 WHERE id = ?"
                " RETURNING last_sequence",
                (recipient.id,),
            ).fetchone()
            cur = conn.execute(
                "INSERT INTO messages (sender_id, recipient_id, client_id, body, sent_ms)"
                " VALUES (?, ?, ?, ?, ?)",
                (sender.id, recipient.id, client_id, body, to_ms(sent_at)),
            )
            message_id = cur.lastrowid
            assert message_id is not None
            conn.execute(
                "INSERT INTO inbox (user_id, sequence, message_id) VALUES (?, ?, ?)",
                (recipient.id, sequence, message_id),
            )
            stored = StoredMessage(
                sequence=sequence,
                message_id=message_id,
                sender=sender.username,
                sender_display_name=sender.display_name,
                recipient=recipient.username,
                body=body,
                sent_at=sent_at,
                client_id=client_id,
            )
            return stored, False

        return await self._writer.run(insert)

    async def messages_after(
        self, account: Account, after_sequence: int, limit: int
    ) -> list[StoredMessage]:
        """Inbox messages after ``after_sequence``, oldest first, at most ``limit``."""

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

    async def ack(self, account: Account, sequence: int) -> None:
        """Raise the acknowledged cursor to ``sequence``, capped at the last stored one."""

        def update(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE users SET acked_sequence = min(?, last_sequence)"
                " WHERE id = ? AND acked_sequence < ?",
                (sequence, account.id, sequence),
            )

        await self._writer.run(update)
