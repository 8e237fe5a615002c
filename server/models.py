"""Plain typed records shared by auth, store, broker and hub (no protobuf here).

Times are timezone-aware UTC :class:`datetime.datetime` values; the store keeps
them as integer milliseconds since the Unix epoch.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime


def utc_now() -> datetime:
    """Current time, UTC, truncated to whole milliseconds (the store's resolution)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def to_ms(when: datetime) -> int:
    """Milliseconds since the Unix epoch (exact for millisecond-truncated times)."""
    return round(when.timestamp() * 1000)


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
class SessionInfo:
    """A live session: whose it is and when it expires (UTC, millisecond resolution)."""

    account: Account
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class UserView:
    """An account as other users see it, with presence."""

    username: str
    display_name: str
    online: bool
    presence_changed_at: datetime | None
    bot: bool


class EntryKind(enum.IntEnum):
    """What an inbox entry is (stored as an integer)."""

    TEXT = 0  # a message from a user to a user or a group
    RECEIPT = 1  # the recipient acknowledged a direct message of this user
    GROUP_UPDATE = 2  # a group this user belongs to changed


class GroupAction(enum.StrEnum):
    """What happened to a group (GROUP_UPDATE entries)."""

    CREATED = "created"
    MEMBERS_ADDED = "members_added"
    MEMBERS_LEFT = "members_left"


@dataclass(frozen=True, slots=True)
class UsersPage:
    """One page of a user list, sorted by username; ``next_page_token`` is empty on the
    last page (AIP-158)."""

    users: list[UserView]
    next_page_token: str


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """An entry in one recipient's inbox at ``sequence`` (1, 2, 3, … per recipient).

    For ``TEXT``: ``body`` from ``sender`` (to ``group`` if set). For
    ``RECEIPT``: ``sender`` acknowledged, at ``sent_at``, the messages
    ``ref_message_ids`` (oldest first) whose client ids are ``ref_client_ids``; the
    last of them is ``ref_message_id`` with client id ``client_id`` (a cumulative
    receipt). For ``GROUP_UPDATE``: ``sender`` did ``action`` with ``members`` in
    ``group``. History entries have sequence 0.
    """

    sequence: int
    message_id: int
    sender: str
    sender_display_name: str
    recipient: str
    body: str
    sent_at: datetime
    client_id: str
    kind: EntryKind = EntryKind.TEXT
    group: str = ""
    ref_message_id: int = 0
    action: GroupAction | None = None
    members: tuple[str, ...] = ()
    ref_message_ids: tuple[int, ...] = ()
    ref_client_ids: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        """Approximate wire size in bytes (body plus a fixed envelope overhead)."""
        return len(self.body) + 96 + 16 * len(self.members) + 48 * len(self.ref_message_ids)


@dataclass(frozen=True, slots=True)
class Group:
    """A group: unique canonical ``name`` and its members' usernames, sorted."""

    id: int
    name: str
    members: tuple[str, ...]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Appended:
    """The result of storing one message: its id, every inbox entry made, and whether
    it had been stored before under the same client id (then nothing new was made)."""

    message_id: int
    sent_at: datetime
    entries: list[StoredMessage]
    duplicate: bool


@dataclass(frozen=True, slots=True)
class SendReceipt:
    """The outcome of a stored send: ``duplicate`` is True for a resent client id."""

    client_id: str
    message_id: int
    sequence: int
    sent_at: datetime
    duplicate: bool
    recipient_online: bool = False
    recipient: str = ""


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


@dataclass(frozen=True, slots=True)
class AuthSession:
    """An authenticated call's session: the SHA-256 of its token (what the store keys it
    by), its account and when it expires (UTC)."""

    token_hash: bytes
    account: Account
    expires_at: datetime


class SessionEventKind(enum.StrEnum):
    """What happened to a user's sessions (published to every node)."""

    REVOKED = "revoked"  # a session of the user was logged out or revoked: recheck them
    TAKEN_OVER = "taken_over"  # the stream whose holder id is ``holder`` was taken over


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """A change to ``username``'s live streams that every node must apply to its own."""

    kind: SessionEventKind
    username: str
    holder: str = ""
