"""The records of the full-screen client's state: a conversation's identity
(`ConversationKey`), its entries (`MessageEntry`, `NoteEntry`), one conversation's
state (`ConversationState`) and what a received message did (`Arrival`).

Plain data without I/O; `model.ChatState` builds and changes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal

Kind = Literal["user", "group"]

#: Own message states: sending (not stored yet), sent (stored), delivered (the
#: recipient's client showed it: a DeliveryReceipt), failed (refused by the server).
MessageState = Literal["received", "sending", "sent", "delivered", "failed"]

_NO_ID: Final = 1 << 62


@dataclass(frozen=True, order=True)
class ConversationKey:
    """A direct conversation (`kind` "user", `name` the other user) or a group, by the
    casefolded name."""

    kind: Kind
    name: str

    @classmethod
    def user(cls, username: str) -> ConversationKey:
        """The direct conversation with `username`."""
        return cls("user", username.casefold())

    @classmethod
    def group(cls, name: str) -> ConversationKey:
        """The group `name` (a leading '#' is ignored)."""
        return cls("group", name.removeprefix("#").casefold())

    @property
    def id(self) -> str:
        """A stable string id ("user-alice", "group-team") for widget option ids."""
        return f"{self.kind}-{self.name}"


@dataclass
class MessageEntry:
    """One message of a conversation. `send_time` is aware (UTC from the server, the
    local clock while `state` is "sending"); `message_id` is 0 until the server stored it."""

    sender: str
    sender_display_name: str
    body: str
    send_time: datetime
    order: int
    message_id: int = 0
    client_id: str = ""
    own: bool = False
    state: MessageState = "received"

    def sort_key(self) -> tuple[datetime, int, int]:
        """Time, then server id (unconfirmed last), then arrival order."""
        return (self.send_time, self.message_id or _NO_ID, self.order)


@dataclass
class NoteEntry:
    """A line from the client itself (command answers, group changes): `text` is already
    safe to show (made with `render`'s sanitising helpers)."""

    text: str
    time: datetime
    order: int

    def sort_key(self) -> tuple[datetime, int, int]:
        """Notes sort by time among the messages, after a message of the same instant."""
        return (self.time, _NO_ID + 1, self.order)


Entry = MessageEntry | NoteEntry


@dataclass
class ConversationState:
    """A conversation: its entries in display order, unread count and history paging.

    `history_token` is None until the first history page was loaded, then the token of
    the next older page ("" when the oldest message is loaded). `marker_order` is the
    `order` of the first entry that was unread when the conversation was opened (the
    "new messages" marker), None for no marker.
    """

    key: ConversationKey
    title: str
    entries: list[Entry] = field(default_factory=list)
    unread: int = 0
    last_activity: datetime | None = None
    history_token: str | None = None
    loading: bool = False
    first_unread: int | None = None
    marker_order: int | None = None
    members: tuple[str, ...] = ()

    @property
    def history_complete(self) -> bool:
        """True once the oldest message of the conversation is loaded."""
        return self.history_token == ""

    def messages(self) -> list[MessageEntry]:
        """The message entries only, in display order."""
        return [e for e in self.entries if isinstance(e, MessageEntry)]


@dataclass(frozen=True)
class Arrival:
    """What `ChatState.receive` did with a message: the conversation it went to, whether
    it was new (not a duplicate) and whether it counts as unread (another conversation)."""

    key: ConversationKey
    new: bool
    unread: bool
