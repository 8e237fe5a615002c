"""PostgreSQL store (several nodes): the shared operations of ``store_ops`` on asyncpg.

The schema, queries and inbox rules are those of :mod:`.store_ops` and
:mod:`.schema` (the same as SQLite's); this module is what is PostgreSQL's own:
the pool, :func:`run_op` (the async driver of an operation on an asyncpg
connection) and the executor:

* A connection pool; every write is one transaction, committed with
  ``synchronous_commit = on`` (set per connection), so a write that returns is
  durable on the server's disk (https://www.postgresql.org/docs/current/wal-async-commit.html).
* Per-recipient gap-free sequences: ``UPDATE users SET last_sequence =
  last_sequence + 1 … RETURNING`` inside the message's transaction; the row lock
  serialises writers of one inbox and a rolled-back transaction gives its number back.
* Idempotency: ``INSERT … ON CONFLICT (sender_id, client_id) DO NOTHING``; a
  concurrent insert of the same ``(sender, client id)`` (e.g. a resend on
  another node) waits for the first transaction and then resolves to the stored
  entries with ``duplicate=True``, never an error.
* Call order: :meth:`PostgresStore.store_message` and
  :meth:`~PostgresStore.store_group_message` queue the write at once and chain it
  after the previous queued write *of the same sender*, so one sender's messages
  commit in the order they were sent while different senders write in parallel.
* Row locks on ``users`` are taken in id order where a transaction needs several
  (group messages, receipts); a deadlock or serialization failure that still
  happens is retried (the operation is built again and rerun).
* The schema is versioned like SQLite's (``schema_version``); nodes starting
  together migrate under a transaction-scoped advisory lock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import asyncpg
from asyncpg.exceptions import DeadlockDetectedError, SerializationError

from . import schema
from .config import redact_url
from .schema import SCHEMA_VERSION
from .sql import POSTGRES, Fetch, Op, Query, numbered
from .store_sql import SqlStore

__all__ = ["SCHEMA_VERSION", "PostgresStore", "run_op"]

log = logging.getLogger(__name__)
#: A node frozen inside a transaction longer than this (ms) loses it and its row locks.
IDLE_IN_TRANSACTION_MS = 5000
T = TypeVar("T")
if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Connection: TypeAlias = PoolConnectionProxy[asyncpg.Record] | asyncpg.Connection[asyncpg.Record]

TX_ATTEMPTS = 5  # tries of one write transaction on deadlock / serialization failure
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
        self._tails: dict[int, asyncio.Task[Any]] = {}  # sender id → its last queued write
        self._pending: set[asyncio.Task[Any]] = set()
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
        """Wait for queued writes, then close every connection."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=CLOSE_TIMEOUT_S)
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
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    return await run_op(conn, make())
            except (DeadlockDetectedError, SerializationError) as exc:
                if attempt >= TX_ATTEMPTS:
                    raise
                log.warning("write transaction retried (attempt %d): %s", attempt, exc)
                attempt += 1

    def _write_queued(self, sender_id: int, make: Callable[[], Op[T]]) -> asyncio.Future[T]:
        """Start ``make()`` as a transaction once the sender's previous queued write has
        finished.

        The returned future is shielded: a caller that stops waiting does not
        cancel the write (as with the SQLite writer queue).
        """
        previous = self._tails.get(sender_id)

        async def run() -> T:
            if previous is not None:
                await asyncio.wait({previous})  # its outcome is its caller's business
            return await self._write(make)

        task = asyncio.get_running_loop().create_task(run(), name=f"pg-write-{sender_id}")
        self._tails[sender_id] = task
        self._pending.add(task)

        def done(finished: asyncio.Task[Any]) -> None:
            self._pending.discard(finished)
            if self._tails.get(sender_id) is finished:
                del self._tails[sender_id]

        task.add_done_callback(done)
        return asyncio.shield(task)
