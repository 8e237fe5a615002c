"""SQLite store (the embedded default): one file in WAL mode with synchronous=FULL.

The schema, queries and inbox rules are the shared operations of the
``store_ops_*`` modules (see :mod:`.store_sql`) and :mod:`.schema`; this
module is what is SQLite's own: the connection and its pragmas, the file modes,
and the executor. :func:`run_op` is the synchronous driver of an operation on a
``sqlite3`` connection.

Writes go through one writer thread that commits *groups*: every write queued
while the previous commit was syncing runs in the next transaction, each in
its own savepoint, and one synced ``COMMIT`` makes the whole group durable
before any caller is answered. At light load nothing queues during a sync, so
each write would pay a commit and its fsync alone: when writes arrive less than
a *commit window* apart on average, a lone write waits up to that window for
the next one (see :class:`_GroupCommitWriter`). Reads use a second connection
(WAL readers never block the writer). See https://www.sqlite.org/wal.html and
https://www.sqlite.org/pragma.html#pragma_synchronous.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from . import schema
from .schema import SCHEMA_VERSION, new_history_id
from .sql import SQLITE, Fetch, Op
from .store_sql import SqlStore

__all__ = ["SCHEMA_VERSION", "SqliteStore", "new_history_id", "run_op"]

log = logging.getLogger(__name__)
T = TypeVar("T")
_Job = tuple[Callable[[sqlite3.Connection], Any], Any]  # a write and its asyncio.Future

MAX_GROUP = 512  # writes per group commit
COMMIT_WINDOW_S = 0.001  # longest wait for a second write before committing a lone one, s
GAP_SMOOTHING = 0.2  # weight of the newest gap in the moving average of write arrivals
MAX_GAP_S = 1.0  # gaps are counted up to this (an idle spell does not skew the average), s
PRIVATE_DIR_MODE = 0o700  # a data directory this process creates: owner only
PRIVATE_FILE_MODE = 0o600  # database, -wal, -shm, lock, backup and export files: owner only
SIDECARS = ("-wal", "-shm", "-journal")  # files SQLite keeps next to a database


def run_op(conn: sqlite3.Connection, op: Op[T]) -> T:
    """Run the operation ``op`` on ``conn`` (synchronously) and return its result.

    Transactions are the caller's: the writer thread's group commit, a reader's
    autocommit, or an explicit ``BEGIN``. Errors of SQLite or of the operation
    propagate. (One loop, no helper calls: this runs for every query of every write.)
    """
    execute = conn.execute
    result: Any = None
    try:
        while True:
            sql, params, fetch = op.send(result)
            if fetch is Fetch.MANY:
                conn.executemany(sql, params)
                result = None
                continue
            cur = execute(sql, params)
            if fetch is Fetch.ALL:
                result = cur.fetchall()
            elif fetch is Fetch.NONE:
                result = None
            else:
                row = cur.fetchone()
                result = row if fetch is Fetch.ONE or row is None else row[0]
    except StopIteration as done:
        value: T = done.value
        return value


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


def connect(path: str | Path) -> sqlite3.Connection:
    """An autocommit connection with the server's pragmas (WAL, synchronous=FULL,
    foreign keys, 30 s busy timeout); usable from any one thread at a time."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection, begin: str = "BEGIN IMMEDIATE") -> Iterator[None]:
    """``begin`` … ``COMMIT`` around the block on the autocommit connection ``conn``;
    ``ROLLBACK`` if the block raises."""
    conn.execute(begin)
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def migrate(conn: sqlite3.Connection) -> list[int]:
    """Create or migrate the schema of ``conn`` (:func:`.schema.migrate`) in one
    transaction, foreign keys off while tables are rebuilt
    (https://www.sqlite.org/lang_altertable.html) and checked before the commit.

    Raises:
        RuntimeError: a newer schema, or the migration broke foreign keys.
    """
    conn.execute("PRAGMA foreign_keys=OFF")
    try:
        with transaction(conn):
            applied = run_op(conn, schema.migrate(SQLITE))
            problems = conn.execute("PRAGMA foreign_key_check").fetchall()
            if problems:
                raise RuntimeError(
                    f"migration to v{SCHEMA_VERSION} broke foreign keys: {problems[:3]}"
                )
    finally:
        conn.execute("PRAGMA foreign_keys=ON")
    return applied


class _GroupCommitWriter:
    """One thread, one connection; runs queued write functions in group commits.

    Args:
        path: the database file.
        window_s: commit window, seconds (0 = off). When the writer finds a single
            job queued and jobs have been arriving less than ``window_s`` apart on
            average (a moving average of the gaps between :meth:`submit` calls), it
            waits up to ``window_s`` for the next job before ``BEGIN``, so one
            commit and fsync serve several writes. A job is still answered only after the
            synced ``COMMIT`` of its group; the window adds at most ``window_s`` to
            its latency, and nothing when writes are sparse (an idle server) or
            already queue up (under load the previous sync gathers them).
    """

    def __init__(self, path: str, window_s: float = COMMIT_WINDOW_S) -> None:
        self._path = path
        self._window_s = window_s
        self._last_submit = 0.0  # time.monotonic() of the latest submit
        self._gap_s = MAX_GAP_S  # moving average of the gaps between submits, s
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
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
        now = time.monotonic()
        self._gap_s += GAP_SMOOTHING * (min(now - self._last_submit, MAX_GAP_S) - self._gap_s)
        self._last_submit = now
        self._jobs.put((fn, fut))
        return fut

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` inside the next group; returns after the group's synced commit."""
        return await self.submit(fn)

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=30)

    @staticmethod
    def _resolve(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
        """Answer every job of one group (on the event loop: one wake-up per group)."""
        for fut, result, error in outcomes:
            if fut.done():
                continue
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(result)

    def _run(self) -> None:
        conn = connect(self._path)
        stopping = False
        try:
            while not stopping:
                job = self._jobs.get()
                if job is None:
                    break
                batch = [job]
                stopping = self._take_queued(batch)
                if not stopping and len(batch) == 1 and self._gap_s < self._window_s:
                    stopping = self._wait_for_more(batch)
                self._commit_group(conn, batch)
        finally:
            conn.close()

    def _take_queued(self, batch: list[_Job]) -> bool:
        """Move the jobs queued now into ``batch`` (at most MAX_GROUP in all); True if the
        stop marker was taken."""
        while len(batch) < MAX_GROUP:
            try:
                more = self._jobs.get_nowait()
            except queue.Empty:
                return False
            if more is None:
                return True
            batch.append(more)
        return False

    def _wait_for_more(self, batch: list[_Job]) -> bool:
        """The commit window: wait up to ``window_s`` for the next job, then take it and
        whatever else is queued; True if the stop marker was taken."""
        try:
            more = self._jobs.get(timeout=self._window_s)
        except queue.Empty:
            return False
        if more is None:
            return True
        batch.append(more)
        return self._take_queued(batch)

    def _commit_group(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        assert self._loop is not None
        outcomes: list[tuple[Any, Any, BaseException | None]] = []
        isolate = len(batch) > 1  # a lone job needs no savepoint: the transaction is its own
        try:
            conn.execute("BEGIN IMMEDIATE")
            for fn, fut in batch:
                if isolate:
                    conn.execute("SAVEPOINT job")
                try:
                    result = fn(conn)
                except Exception as exc:  # the job's own failure: undo only this job
                    if isolate:
                        conn.execute("ROLLBACK TO job")
                        conn.execute("RELEASE job")
                    elif conn.in_transaction:
                        conn.execute("ROLLBACK")
                    outcomes.append((fut, None, exc))
                else:
                    if isolate:
                        conn.execute("RELEASE job")
                    outcomes.append((fut, result, None))
            if conn.in_transaction:
                conn.execute("COMMIT")
                self.commits += 1
        except Exception as exc:  # the commit itself failed: nobody's write is durable
            log.exception("group commit failed")
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            outcomes = [(fut, None, exc) for _, fut in batch]
        self._loop.call_soon_threadsafe(self._resolve, outcomes)


class SqliteStore(SqlStore):
    """The :class:`~hubbub.server.store.Store` on one SQLite file.

    Args:
        path: database file; parent directories are created. ``synchronous=FULL``
            means a committed write survives a process crash and a power loss.
        commit_window_s: the writer's commit window, seconds (0 = off; see
            :class:`_GroupCommitWriter`).
    """

    dialect = SQLITE

    def __init__(self, path: str | Path, commit_window_s: float = COMMIT_WINDOW_S) -> None:
        self.path = Path(path)
        self._writer = _GroupCommitWriter(str(self.path), commit_window_s)
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
        conn = connect(self.path)
        try:
            migrate(conn)
        finally:
            conn.close()

    @property
    def location(self) -> str:
        """The database file, for messages."""
        return str(self.path)

    async def close(self) -> None:
        """Stop the writer after its queued writes and close the readers."""
        await asyncio.to_thread(self._writer.stop)
        self._readers.shutdown(wait=True)
        with self._lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()

    # -- executors ------------------------------------------------------------------------

    def _write_queued(self, sender_id: int, make: Callable[[], Op[T]]) -> asyncio.Future[T]:
        """Queue ``make()`` for the next group commit (:class:`_GroupCommitWriter`): one
        writer runs every write in call order, whatever the sender."""
        op = make()
        return self._writer.submit(lambda conn: run_op(conn, op))

    async def _write(self, make: Callable[[], Op[T]]) -> T:
        """Run ``make()`` in the next group commit; returns after its synced commit."""
        return await self._write_queued(0, make)

    async def _read(self, op: Op[T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._read_in_thread, op)

    def _read_in_thread(self, op: Op[T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            self._local.conn = conn
            with self._lock:
                self._reader_conns.append(conn)
        return run_op(conn, op)
