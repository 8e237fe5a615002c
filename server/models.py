"""Plain typed records shared by auth, store, broker and hub (no protobuf here).

Times are timezone-aware UTC :class:`datetime.datetime` values; the store keeps
them as integer milliseconds since the Unix epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


def utc_now() -> datetime:
    """Current time, UTC, truncated to whole milliseconds (the store's resolution)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def to_ms(when: datetime) -> int:
    """Milliseconds since the Unix epoch."""
    return int(when.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    """UTC datetime from milliseconds since the Unix epoch."""
    return datetime.fromtimestamp(ms / 1000, UTC)


@dataclass(frozen=True, slots=True)
class Account:
    """A stored account. ``username`` is canonical (RFC 8265 UsernameCaseMapped)."""

    id: int
    username: str
    display_name: str
    password_hash: str
    bot: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class UserView:
    """An account as other users see it, with presence."""

    username: str
    display_name: str
    online: bool
    presence_changed_at: datetime | None
    bot: bool


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message in one recipient's inbox at ``sequence`` (1, 2, 3, … per recipient)."""

    sequence: int
    message_id: int
    sender: str
    sender_display_name: str
    recipient: str
    body: str
    sent_at: datetime
    client_id: str

    @property
    def size(self) -> int:
        """Approximate wire size in bytes (body plus a fixed envelope overhead)."""
        return len(self.body) + 96


@dataclass(frozen=True, slots=True)
class SendReceipt:
    """The outcome of a stored send: ``duplicate`` is True for a resent client id."""

    client_id: str
    message_id: int
    sequence: int
    sent_at: datetime
    duplicate: bool
    recipient_online: bool = False


@dataclass(frozen=True, slots=True)
class InboxCursor:
    """A user's inbox positions: last stored and last acknowledged sequence."""

    last_sequence: int
    acked_sequence: int


@dataclass(frozen=True, slots=True)
class PresenceChange:
    """A user came online (``online=True``) or went offline at ``at``."""

    user: UserView
    at: datetime
