"""PostgreSQL store (several nodes): the shared ``store_ops_*`` operations on asyncpg.

The schema, queries and inbox rules are those of the ``store_ops_*`` modules (see
:mod:`.store_sql`) and
:mod:`.schema` (the same as SQLite's); this module is what is PostgreSQL's own:
the pool, :func:`run_op` (the async driver of an operation on an asyncpg
connection) and the executor:

* A connection pool; every write is in one transaction, committed with
  ``synchronous_commit = on`` (set per connection), so a write that returns is
  durable on the server's disk (https://www.postgresql.org/docs/current/wal-async-commit.html).
* Per-recipient gap-free sequences: ``UPDATE users SET last_sequence =
  last_sequence + 1 … RETURNING`` inside the message's transaction; the row lock
  serialises writers of one inbox and a rolled-back transaction gives its number back.
* Idempotency: ``INSERT … ON CONFLICT (sender_id, client_id) DO NOTHING``; a
  concurrent insert of the same ``(sender, client id)`` (e.g. a resend on
  another node) waits for the first transaction and then resolves to the stored
  entries with ``duplicate=True``, never an error.
* Group commit and call order: :meth:`PostgresStore.store_message` and
  :meth:`~PostgresStore.store_group_message` queue the write at once on one of
  :data:`WRITERS` writers, chosen by sender, so one sender's messages commit in
  the order they were sent; each writer commits every direct message queued
  while its previous commit ran in ONE transaction of multi-row statements
  (:class:`_Writer`, :func:`.store_ops_inbox.append_many`), as SQLite's writer thread
  groups its writes.
* Row locks on ``users`` are taken in id order where a transaction needs several
  (group messages, receipts); a deadlock or serialization failure that still
  happens is retried (the operation is built again and rerun).
* The schema is versioned like SQLite's (``schema_version``); nodes starting
  together migrate under a transaction-scoped advisory lock.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import asyncpg
from asyncpg.exceptions import DeadlockDetectedError, SerializationError

from . import schema, store_ops_inbox
from .config import redact_url
from .models import Appended
from .schema import SCHEMA_VERSION
from .sql import POSTGRES, Fetch, Op, Query, numbered
from .store_sql import SqlStore

__all__ = ["SCHEMA_VERSION", "PostgresStore", "run_op"]

log = logging.getLogger(__name__)
#: A node frozen inside a transaction longer than this (ms) loses it and its row locks.
#: 1 s: a frozen node (SIGSTOP, VM pause) holds its row locks this long at most, so the
#: other nodes' writes to the same inboxes wait ~1 s, not 5-15 s (issue 9, failover ≤ 5 s).
#: A live node that stalls this long mid-transaction has the write rerun (``_write``).
IDLE_IN_TRANSACTION_MS = 1000
#: Errors of a connection that PostgreSQL or the network ended under a transaction.
LOST_CONNECTION = (
    asyncpg.InterfaceError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.IdleInTransactionSessionTimeoutError,
)
T = TypeVar("T")
if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Connection: TypeAlias = PoolConnectionProxy[asyncpg.Record] | asyncpg.Connection[asyncpg.Record]

TX_ATTEMPTS = 5  # tries of one write transaction on deadlock / serialization failure
MAX_GROUP = 64  # queued writes per group commit (see _Writer: bounds the burst of answers)
WRITERS = 1  # group-commit writers per node (each on its own connection while it commits)
CLOSE_TIMEOUT_S = 10.0


async def _execute(conn: Connection, query: Query) -> Any:
    sql, params, fetch = query
    sql = numbered(sql)
    if fetch is Fetch.NONE:
        await conn.execute(sql, *params)
        return None
    if fetch is Fetch.ONE:
        return await conn.fetchrow(sql, *params)
    if fetch is Fetch.ALL:
        return await conn.fetch(sql, *params)
    if fetch is Fetch.VALUE:
        return await conn.fetchval(sql, *params)
    if len(params) == 1:  # one row: a plain statement is one round trip less
        await conn.execute(sql, *params[0])
    elif params:
        await conn.executemany(sql, params)
    return None


async def run_op(conn: Connection, op: Op[T]) -> T:
    """Run the operation ``op`` on the asyncpg connection ``conn`` and return its result.

    ``?`` placeholders become ``$n`` (:func:`.sql.numbered`). Transactions are the
    caller's. Errors of PostgreSQL or of the operation propagate.
    """
    try:
        query = next(op)
        while True:
            query = op.send(await _execute(conn, query))
    except StopIteration as done:
        result: T = done.value
        return result


class PostgresStore(SqlStore):
    """The :class:`~hubbub.server.store.Store` on a PostgreSQL database shared by every node.

    Args:
        url: ``postgresql://user:password@host:port/database`` (libpq URL; a missing
            password is taken from ``PGPASSWORD`` or ``~/.pgpass`` by asyncpg).
        max_connections: pool size of this node.
    """

    dialect = POSTGRES

    def __init__(self, url: str, *, max_connections: int = 20) -> None:
        self.url = url
        self._max_connections = max_connections
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._writers: list[_Writer] = []  # a sender's writes go to writers[sender id % n]
        self.group_commits = 0  # write transactions committed, for metrics and tests
        self._history_id: str | None = None

    @property
    def display_url(self) -> str:
        """The database URL without its password."""
        return redact_url(self.url)

    @property
    def pool(self) -> asyncpg.Pool[asyncpg.Record]:
        """The connection pool (after :meth:`open`)."""
        if self._pool is None:
            raise RuntimeError("the PostgreSQL store is not open")
        return self._pool

    async def open(self) -> None:
        """Connect the pool and create or migrate the schema.

        Raises:
            RuntimeError: the database cannot be reached or has a newer schema.
        """
        try:
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=self._max_connections,
                server_settings={
                    "synchronous_commit": "on",
                    "application_name": "hubbub",
                    # A frozen node (SIGSTOP, a VM pause) must not keep row locks that block
                    # every other node's writes for its users: PostgreSQL ends a session
                    # idle inside a transaction for longer than this (our transactions are
                    # milliseconds long).
                    "idle_in_transaction_session_timeout": str(IDLE_IN_TRANSACTION_MS),
                },
            )
            async with self._pool.acquire() as conn:
                await self._migrate(conn)
            self._writers = [_Writer(self, f"pg-writer-{i}") for i in range(WRITERS)]
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            await self._close_pool()
            message = " ".join(str(exc).replace(self.url, self.display_url).split())
            raise RuntimeError(
                f"cannot open the PostgreSQL database {self.display_url}: "
                f"{message or type(exc).__name__}"
            ) from None
        except BaseException:
            await self._close_pool()
            raise

    async def _migrate(self, conn: Connection) -> None:
        async with conn.transaction():
            await run_op(conn, schema.migrate(POSTGRES))

    @property
    def location(self) -> str:
        """The database URL without its password, for messages."""
        return self.display_url

    async def close(self) -> None:
        """Commit queued writes (for at most :data:`CLOSE_TIMEOUT_S`), then close every
        connection."""
        writers, self._writers = self._writers, []
        await asyncio.gather(*(writer.stop(CLOSE_TIMEOUT_S) for writer in writers))
        await self._close_pool()

    async def _close_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT_S)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            pool.terminate()

    # -- executors ----------------------------------------------------------------------

    async def _read(self, op: Op[T]) -> T:
        """Run ``op`` on a pooled connection in autocommit."""
        async with self.pool.acquire() as conn:
            return await run_op(conn, op)

    async def _write(self, make: Callable[[], Op[T]]) -> T:
        """Run ``make()`` in one transaction; a deadlock or serialization failure
        rolls it back and runs a new ``make()`` (up to :data:`TX_ATTEMPTS` tries)."""
        attempt = 1
        while True:
            ran = False
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    result = await run_op(conn, make())
                    ran = True
                self.group_commits += 1
                return result
            except (DeadlockDetectedError, SerializationError) as exc:
                if attempt >= TX_ATTEMPTS:
                    raise
                log.warning("write transaction retried (attempt %d): %s", attempt, exc)
                attempt += 1
            except LOST_CONNECTION as exc:
                # Lost before COMMIT was sent (e.g. this node stalled longer than
                # IDLE_IN_TRANSACTION_MS and PostgreSQL ended the transaction): nothing was
                # committed, so the write runs again on another connection. A loss during
                # COMMIT has an unknown outcome and is raised.
                if ran or attempt >= TX_ATTEMPTS:
                    raise
                log.warning("write transaction lost its connection, rerun: %s", exc)
                attempt += 1

    def _write_queued(self, sender_id: int, make: Callable[[], Op[T]]) -> asyncio.Future[T]:
        """Queue ``make()`` on the sender's writer; it runs in its own transaction once the
        writes queued before it there are committed (see :class:`_Writer`)."""
        return self._submit(sender_id, _Job(None, make))

    def _append_queued(self, entry: store_ops_inbox.NewEntry) -> asyncio.Future[Appended]:
        """Queue ``entry`` on its sender's writer, which stores it together with the
        entries queued next to it in one transaction (:func:`.store_ops_inbox.append_many`)."""
        return self._submit(entry.sender.id, _Job(entry, None))

    def _submit(self, sender_id: int, job: _Job) -> asyncio.Future[Any]:
        if not self._writers:  # closed (or never opened): fail the write, as a closed pool would
            job.future.set_exception(RuntimeError("the PostgreSQL store is not open"))
            return job.future
        return self._writers[sender_id % len(self._writers)].submit(job)


class _Job:
    """A queued write: an entry to append (batched) or an operation factory (alone)."""

    __slots__ = ("entry", "future", "make")

    def __init__(
        self, entry: store_ops_inbox.NewEntry | None, make: Callable[[], Op[Any]] | None
    ) -> None:
        self.entry = entry
        self.make = make
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()


class _Writer:
    """One group-commit writer: a queue of writes and the task that commits them in order.

    Every write queued while the previous commit ran goes into the next one (at
    most :data:`MAX_GROUP`), as in SQLite's writer thread: consecutive appends
    become ONE transaction of a few multi-row statements
    (:func:`.store_ops_inbox.append_many`: one message insert, one ordered row lock,
    one sequence update, one inbox insert), whatever their number; any other
    queued write runs alone, in queue order. A future resolves only after its
    transaction's commit (``synchronous_commit = on``). If a batch fails
    (deadlock, serialization failure, lost connection), it was rolled back as a
    whole and each member is rerun in its own transaction with the usual retries
    (:meth:`PostgresStore._write`); idempotency per ``(sender, client_id)`` makes
    a rerun of a write whose commit outcome is unknown safe.
    """

    def __init__(self, store: PostgresStore, name: str) -> None:
        self._store = store
        self._jobs: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=name)

    def submit(self, job: _Job) -> asyncio.Future[Any]:
        """Queue ``job``; its future resolves after its commit (cancelling the future does
        not cancel the write)."""
        self._jobs.put_nowait(job)
        return job.future

    async def stop(self, timeout_s: float) -> None:
        """Commit what is queued, then end the task (cancelled after ``timeout_s``)."""
        self._jobs.put_nowait(None)
        done, _ = await asyncio.wait({self._task}, timeout=timeout_s)
        if not done:
            self._task.cancel()
            await asyncio.wait({self._task})
        while not self._jobs.empty():  # only after a cancel: fail what never ran
            job = self._jobs.get_nowait()
            if job is not None:
                _resolve(job.future, None, RuntimeError("the PostgreSQL store closed"))

    async def _run(self) -> None:
        while True:
            job = await self._jobs.get()
            if job is None:
                return
            batch = [job]
            stopping = False
            while len(batch) < MAX_GROUP and not self._jobs.empty():
                more = self._jobs.get_nowait()
                if more is None:
                    stopping = True
                    break
                batch.append(more)
            try:
                await self._commit(batch)
            except asyncio.CancelledError:
                for pending in batch:
                    _resolve(pending.future, None, RuntimeError("the PostgreSQL store closed"))
                raise
            if stopping:
                return

    async def _commit(self, batch: list[_Job]) -> None:
        """Commit ``batch`` in order: runs of appends together, other writes alone."""
        run: list[_Job] = []
        for job in batch:
            if job.entry is not None:
                run.append(job)
                continue
            if run:
                await self._commit_appends(run)
                run = []
            assert job.make is not None
            await self._commit_alone(job, job.make)
        if run:
            await self._commit_appends(run)

    async def _commit_appends(self, jobs: list[_Job]) -> None:
        store = self._store
        entries = [job.entry for job in jobs if job.entry is not None]
        try:
            async with store.pool.acquire() as conn, conn.transaction():
                results = await run_op(conn, store_ops_inbox.append_many(POSTGRES, entries))
        except Exception as exc:  # rolled back: every member reruns on its own
            log.warning("group commit of %d writes failed, rerun one by one: %s", len(jobs), exc)
            for job, entry in zip(jobs, entries, strict=True):
                await self._commit_alone(
                    job, functools.partial(store_ops_inbox.append, POSTGRES, entry)
                )
            return
        store.group_commits += 1
        for job, result in zip(jobs, results, strict=True):
            _resolve(job.future, result, None)

    async def _commit_alone(self, job: _Job, make: Callable[[], Op[Any]]) -> None:
        try:
            result = await self._store._write(make)
        except Exception as exc:  # the write's own failure (domain error, database down)
            _resolve(job.future, None, exc)
        else:
            _resolve(job.future, result, None)


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
