"""The store interface: durable accounts, sessions, groups, inboxes and cursors.

Implementations are siblings (``store_sqlite`` is the embedded default,
``store_postgres`` serves several nodes). All methods are coroutines taking and
returning plain :mod:`hubbub.server.models` records. A write that returns has
been committed durably.

Both SQL stores are one program: the schema and its migrations
(:mod:`.schema`), every query, the row mapping and the inbox rules
(the ``store_ops_*`` modules) are written once as sans-I/O operations (:mod:`.sql`), and
the methods of this interface once over them (:class:`.store_sql.SqlStore`).
Each backend keeps its connection, its driver and its executor.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from typing import Protocol

from .models import Account, Appended, Group, InboxCursor, SessionInfo, StoredMessage


class Store(Protocol):
    """Durable state of a Hubbub deployment."""

    async def open(self) -> None:
        """Connect and create or migrate the schema."""

    async def close(self) -> None:
        """Flush and release every connection."""

    async def history_id(self) -> str:
        """The id of this database's history (32 hex digits).

        Created once with the schema and stable across restarts and nodes;
        ``hubbub-server restore`` and ``import`` give the database a new one, so
        an inbox position (sequence) is only meaningful with its history id.
        """
        ...

    # -- accounts and sessions ----------------------------------------------------

    async def create_account(
        self, username: str, display_name: str, password_hash: str, *, bot: bool = False
    ) -> Account:
        """Insert an account with canonical ``username`` and its UTS #39 skeleton
        (:func:`hubbub.server.usernames.skeleton`).

        The check and the insert are one atomic write, so of two parallel
        registrations of look-alike names at most one succeeds.

        Raises:
            UsernameTaken: the name exists already.
            UsernameConfusable: another account's name has the same skeleton.
        """
        ...

    async def get_account(self, username: str) -> Account | None:
        """The account with canonical ``username``, or None."""
        ...

    async def list_accounts(self, after: str = "", limit: int = 0) -> list[Account]:
        """Accounts with username > ``after``, sorted by username (code point order),
        at most ``limit`` of them (0: all)."""
        ...

    async def update_account(
        self,
        account: Account,
        *,
        display_name: str | None = None,
        password_hash: str | None = None,
        keep_session: bytes | None = None,
    ) -> Account:
        """Change the display name and/or password hash; a new password revokes
        every session of the account except ``keep_session`` (a token hash)."""
        ...

    async def create_session(
        self, token_hash: bytes, account_id: int, expires_at: datetime
    ) -> None:
        """Store a session under the SHA-256 of its token (the token itself is never stored)."""

    async def get_session(self, token_hash: bytes, now: datetime) -> SessionInfo | None:
        """The account and expiry of a session unexpired at ``now``, or None."""
        ...

    async def delete_session(self, token_hash: bytes) -> None:
        """Revoke one session; unknown hashes are ignored."""

    # -- messages -----------------------------------------------------------------

    def store_message(
        self, sender: Account, recipient: Account, client_id: str, body: str, sent_at: datetime
    ) -> Awaitable[Appended]:
        """Queue a direct message for ``recipient``'s inbox at its next sequence.

        The write is queued before this returns, so calls made one after the
        other commit in that order (per-conversation order) without waiting for
        each other; await the result to know it is durable. Idempotent per
        ``(sender, client_id)``: a resend resolves to the stored entries with
        ``duplicate=True`` and stores nothing.
        """
        ...

    def store_group_message(
        self, sender: Account, group: str, client_id: str, body: str, sent_at: datetime
    ) -> Awaitable[Appended]:
        """Queue a message for every other member's inbox (ordered and idempotent as above).

        Raises:
            GroupNotFound: no such group.
            NotGroupMember: the sender is not a member.
        """
        ...

    async def messages_after(
        self, account: Account, after_sequence: int, limit: int
    ) -> list[StoredMessage]:
        """Up to ``limit`` inbox entries with sequence > ``after_sequence``, in order."""
        ...

    async def cursor(self, account: Account) -> InboxCursor:
        """The account's last stored and last acknowledged inbox sequence."""
        ...

    async def ack(self, account: Account, sequence: int, at: datetime) -> list[StoredMessage]:
        """Raise the acknowledged cursor to ``sequence`` (never lowers it).

        Returns the delivery receipts this creates: one RECEIPT entry in each
        sender's inbox per newly acknowledged direct text message from a user.
        """
        ...

    # -- groups -------------------------------------------------------------------

    async def create_group(
        self, name: str, creator: Account, members: list[Account], at: datetime
    ) -> tuple[Group, Appended]:
        """Create a group of ``creator`` and ``members`` and announce it to them.

        Raises:
            GroupNameTaken: the name exists.
        """
        ...

    async def add_members(
        self, name: str, actor: Account, members: list[Account], at: datetime
    ) -> tuple[Group, Appended | None]:
        """Add ``members`` and announce it (None if all were members already).

        Raises:
            GroupNotFound, NotGroupMember: as the names say.
        """
        ...

    async def leave_group(self, name: str, account: Account, at: datetime) -> Appended:
        """Remove ``account`` from the group and announce it to the group and to them.

        Raises:
            GroupNotFound, NotGroupMember: as the names say.
        """
        ...

    async def get_group(self, name: str) -> Group | None:
        """The group with canonical ``name``, or None."""
        ...

    async def list_groups(self, account: Account) -> list[Group]:
        """Groups ``account`` belongs to, sorted by name."""
        ...

    async def history(
        self,
        account: Account,
        *,
        peer: Account | None,
        group: str | None,
        before_id: int,
        limit: int,
    ) -> list[StoredMessage]:
        """Text messages of one conversation with id < ``before_id``, newest first.

        Raises:
            GroupNotFound, NotGroupMember: for ``group``.
        """
        ...
