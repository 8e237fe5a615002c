"""The Store methods written once for the SQL backends (SQLite and PostgreSQL).

:class:`SqlStore` implements :class:`~hubbub.server.store.Store` by running the
shared operations of the ``store_ops_*`` modules through three executor methods
that each backend provides: :meth:`~SqlStore._read`, :meth:`~SqlStore._write`
(one durable transaction) and :meth:`~SqlStore._write_queued` (queued at call
time, so one sender's writes commit in call order). Writes are passed as
factories (``lambda: store_ops_….…``) because PostgreSQL reruns a write from
scratch after a deadlock or serialization failure.

The operations are written once for every SQL backend (see :mod:`.sql`): each
function returns an operation (a generator of queries, see
:data:`~hubbub.server.sql.Op`) that a backend's driver runs in one transaction
(writes) or on a read connection (reads). They hold the queries, the row
mapping and the inbox rules: gap-free per-recipient sequences, idempotency per
``(sender, client_id)``, who gets a delivery receipt, the server's own
``~receipt:`` and ``~group:`` client ids, group membership and history paging.
One module per concept: :mod:`.store_ops_mapping` (rows → objects, shared
SELECTs), :mod:`.store_ops_accounts` (accounts and sessions),
:mod:`.store_ops_inbox` (the append rule and inbox reads),
:mod:`.store_ops_receipts` (acks), :mod:`.store_ops_groups` (membership,
announcements, group messages) and :mod:`.store_ops_history`.

Where PostgreSQL runs writers in parallel (``dialect.concurrent_writers``) the
operations lock what they depend on: ``users`` rows in id order (the one order
every transaction uses, so no lock cycles), the group row for membership
changes, and an advisory lock per username skeleton. SQLite's single writer
thread needs none of them.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from . import (
    schema,
    store_ops_accounts,
    store_ops_groups,
    store_ops_history,
    store_ops_inbox,
    store_ops_receipts,
)
from .models import (
    Account,
    Appended,
    Group,
    InboxCursor,
    SessionInfo,
    StoredMessage,
    to_ms,
    utc_now,
)
from .sql import Dialect, Op

T = TypeVar("T")


class SqlStore(abc.ABC):
    """The shared half of the SQL stores: every Store method is one shared operation.

    Subclasses set :attr:`dialect` and implement open/close/history_id and the executors.
    """

    dialect: Dialect
    _history_id: str | None = None

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Where the database is, for messages (a file, or a URL without its password)."""

    async def history_id(self) -> str:
        """See :meth:`Store.history_id` (read once, then remembered)."""
        if self._history_id is None:
            found = await self._read(schema.get_history_id())
            if found is None:
                raise RuntimeError(f"{self.location} has no history id")
            self._history_id = found
        return self._history_id

    @abc.abstractmethod
    async def _read(self, op: Op[T]) -> T:
        """Run the read operation ``op`` on a read connection; return its result."""

    @abc.abstractmethod
    async def _write(self, make: Callable[[], Op[T]]) -> T:
        """Run the write operation ``make()`` in one transaction, durable when this returns."""

    @abc.abstractmethod
    def _write_queued(self, sender_id: int, make: Callable[[], Op[T]]) -> asyncio.Future[T]:
        """Queue the write ``make()`` now, after the previous queued write of ``sender_id``;
        the future resolves when it is durable (cancelling it does not cancel the write)."""

    async def create_account(
        self, username: str, display_name: str, password_hash: str, *, bot: bool = False
    ) -> Account:
        """See :meth:`Store.create_account`."""
        created_ms = to_ms(utc_now())
        return await self._write(
            lambda: store_ops_accounts.create_account(
                self.dialect, username, display_name, password_hash, bot, created_ms
            )
        )

    async def get_account(self, username: str) -> Account | None:
        """See :meth:`Store.get_account`."""
        return await self._read(store_ops_accounts.get_account(username))

    async def list_accounts(self, after: str = "", limit: int = 0) -> list[Account]:
        """See :meth:`Store.list_accounts`."""
        return await self._read(store_ops_accounts.list_accounts(self.dialect, after, limit))

    async def update_account(
        self,
        account: Account,
        *,
        display_name: str | None = None,
        password_hash: str | None = None,
        keep_session: bytes | None = None,
    ) -> Account:
        """See :meth:`Store.update_account`."""
        return await self._write(
            lambda: store_ops_accounts.update_account(
                self.dialect, account, display_name, password_hash, keep_session
            )
        )

    async def create_session(
        self, token_hash: bytes, account_id: int, expires_at: datetime
    ) -> None:
        """See :meth:`Store.create_session`."""
        now_ms, expires_ms = to_ms(utc_now()), to_ms(expires_at)
        await self._write(
            lambda: store_ops_accounts.create_session(token_hash, account_id, now_ms, expires_ms)
        )

    async def get_session(self, token_hash: bytes, now: datetime) -> SessionInfo | None:
        """See :meth:`Store.get_session`."""
        return await self._read(store_ops_accounts.get_session(token_hash, to_ms(now)))

    async def delete_session(self, token_hash: bytes) -> None:
        """See :meth:`Store.delete_session`."""
        await self._write(lambda: store_ops_accounts.delete_session(token_hash))

    def store_message(
        self, sender: Account, recipient: Account, client_id: str, body: str, sent_at: datetime
    ) -> asyncio.Future[Appended]:
        """See :meth:`Store.store_message` (queued in call order per sender)."""
        return self._append_queued(
            store_ops_inbox.direct_message(sender, recipient, client_id, body, to_ms(sent_at))
        )

    def _append_queued(self, entry: store_ops_inbox.NewEntry) -> asyncio.Future[Appended]:
        """Queue the append of ``entry`` (:func:`.store_ops_inbox.append`) as a write of its sender
        (:meth:`_write_queued`); a backend may batch such appends into multi-row statements."""
        return self._write_queued(
            entry.sender.id, lambda: store_ops_inbox.append(self.dialect, entry)
        )

    def store_group_message(
        self, sender: Account, group: str, client_id: str, body: str, sent_at: datetime
    ) -> asyncio.Future[Appended]:
        """See :meth:`Store.store_group_message` (queued in call order per sender)."""
        sent_ms = to_ms(sent_at)
        return self._write_queued(
            sender.id,
            lambda: store_ops_groups.store_group_message(
                self.dialect, sender, group, client_id, body, sent_ms
            ),
        )

    async def messages_after(
        self, account: Account, after_sequence: int, limit: int
    ) -> list[StoredMessage]:
        """See :meth:`Store.messages_after`."""
        return await self._read(store_ops_inbox.messages_after(account, after_sequence, limit))

    async def cursor(self, account: Account) -> InboxCursor:
        """See :meth:`Store.cursor`."""
        return await self._read(store_ops_inbox.cursor(account))

    async def ack(self, account: Account, sequence: int, at: datetime) -> list[StoredMessage]:
        """See :meth:`Store.ack`."""
        at_ms = to_ms(at)
        return await self._write(
            lambda: store_ops_receipts.ack(self.dialect, account, sequence, at_ms)
        )

    async def create_group(
        self, name: str, creator: Account, members: list[Account], at: datetime
    ) -> tuple[Group, Appended]:
        """See :meth:`Store.create_group`."""
        at_ms = to_ms(at)
        return await self._write(
            lambda: store_ops_groups.create_group(self.dialect, name, creator, members, at_ms)
        )

    async def add_members(
        self, name: str, actor: Account, members: list[Account], at: datetime
    ) -> tuple[Group, Appended | None]:
        """See :meth:`Store.add_members`."""
        at_ms = to_ms(at)
        return await self._write(
            lambda: store_ops_groups.add_members(self.dialect, name, actor, members, at_ms)
        )

    async def leave_group(self, name: str, account: Account, at: datetime) -> Appended:
        """See :meth:`Store.leave_group`."""
        at_ms = to_ms(at)
        return await self._write(
            lambda: store_ops_groups.leave_group(self.dialect, name, account, at_ms)
        )

    async def get_group(self, name: str) -> Group | None:
        """See :meth:`Store.get_group`."""
        return await self._read(store_ops_groups.get_group(self.dialect, name))

    async def list_groups(self, account: Account) -> list[Group]:
        """See :meth:`Store.list_groups`."""
        return await self._read(store_ops_groups.list_groups(account))

    async def history(
        self,
        account: Account,
        *,
        peer: Account | None,
        group: str | None,
        before_id: int,
        limit: int,
    ) -> list[StoredMessage]:
        """See :meth:`Store.history`."""
        return await self._read(
            store_ops_history.history(self.dialect, account, peer, group, before_id, limit)
        )
