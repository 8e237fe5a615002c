"""The store interface: durable accounts, sessions, inboxes and cursors.

Implementations are siblings (``store_sqlite`` is the embedded default). All
methods are coroutines taking and returning plain :mod:`hubbub.server.models`
records. A write that returns has been committed durably.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from .models import Account, InboxCursor, StoredMessage


class Store(Protocol):
    """Durable state of a Hubbub deployment."""

    async def open(self) -> None:
        """Connect and create or migrate the schema."""

    async def close(self) -> None:
        """Flush and release every connection."""

    async def create_account(
        self, username: str, display_name: str, password_hash: str, *, bot: bool = False
    ) -> Account:
        """Insert an account with canonical ``username``.

        Raises:
            UsernameTaken: the name exists already.
        """
        ...

    async def get_account(self, username: str) -> Account | None:
        """The account with canonical ``username``, or None."""
        ...

    async def list_accounts(self) -> list[Account]:
        """Every account, sorted by username."""
        ...

    async def create_session(
        self, token_hash: bytes, account_id: int, expires_at: datetime
    ) -> None:
        """Store a session under the SHA-256 of its token (the token itself is never stored)."""

    async def get_session(self, token_hash: bytes, now: datetime) -> Account | None:
        """The account of an unexpired session, or None."""
        ...

    async def delete_session(self, token_hash: bytes) -> None:
        """Revoke one session; unknown hashes are ignored."""

    async def store_message(
        self,
        sender: Account,
        recipient: Account,
        client_id: str,
        body: str,
        sent_at: datetime,
    ) -> tuple[StoredMessage, bool]:
        """Append a direct message to ``recipient``'s inbox at the next sequence.

        Idempotent per ``(sender, client_id)``: a resend returns the stored
        message and ``True`` (duplicate) without storing anything.
        """
        ...

    async def messages_after(
        self, account: Account, after_sequence: int, limit: int
    ) -> list[StoredMessage]:
        """Up to ``limit`` inbox messages with sequence > ``after_sequence``, in order."""
        ...

    async def cursor(self, account: Account) -> InboxCursor:
        """The account's last stored and last acknowledged inbox sequence."""
        ...

    async def ack(self, account: Account, sequence: int) -> None:
        """Raise the acknowledged cursor to ``sequence`` (never lowers it)."""
