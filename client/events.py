"""Plain records of the client library: accounts, groups, pages and the Chat events.

Each is a frozen dataclass with UTC `datetime`s; `event_from_pb` and the `from_pb`
class methods are the only places that read the protobuf messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from google.protobuf import timestamp_pb2

from hubbub.v1 import messenger_pb2 as pb

from .errors import ErrorKind, FieldViolation, kind_of_code


def _time(ts: timestamp_pb2.Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


@dataclass(frozen=True)
class UserInfo:
    """An account as others see it. `presence_change_time` is UTC, None if never online."""

    username: str
    display_name: str = ""
    online: bool = False
    bot: bool = False
    presence_change_time: datetime | None = None

    @classmethod
    def from_pb(cls, user: pb.User) -> UserInfo:
        """Convert a protobuf User."""
        return cls(
            username=user.username,
            display_name=user.display_name,
            online=user.presence == pb.PRESENCE_ONLINE,
            bot=user.bot,
            presence_change_time=(
                _time(user.presence_change_time) if user.HasField("presence_change_time") else None
            ),
        )


@dataclass(frozen=True)
class LoginResult:
    """A successful Login: the bearer `token`, when it expires (UTC) and the account."""

    token: str
    expire_time: datetime
    user: UserInfo


@dataclass(frozen=True)
class GroupInfo:
    """A group: its canonical `name` (no leading '#'), its `members` sorted, creation time (UTC)."""

    name: str
    members: tuple[str, ...]
    create_time: datetime | None = None

    @classmethod
    def from_pb(cls, group: pb.Group) -> GroupInfo:
        """Convert a protobuf Group."""
        return cls(
            name=group.name,
            members=tuple(group.members),
            create_time=_time(group.create_time) if group.HasField("create_time") else None,
        )


# --- chat events --------------------------------------------------------------------------


@dataclass(frozen=True)
class Welcome:
    """First event of a chat: who I am, who is online, my inbox positions.

    `history_id` names the history the sequences belong to ("" from servers that do not
    send one); `resume_token` is the secret that lets the next stream of this client take
    this one's place (metadata `hubbub-resume-token`); `session_expire_time` (UTC) is when
    the session token stops being accepted (None if the server did not say).
    """

    user: UserInfo
    online_users: tuple[UserInfo, ...]
    acked_sequence: int
    last_sequence: int
    history_id: str = ""
    resume_token: str = ""
    session_expire_time: datetime | None = None


@dataclass(frozen=True)
class IncomingMessage:
    """A message in my inbox; `sequence` is its gap-free position, `send_time` UTC."""

    sequence: int
    message_id: int
    sender: str
    sender_display_name: str
    recipient: str
    body: str
    send_time: datetime
    client_id: str = ""
    group: str = ""

    @classmethod
    def from_pb(cls, m: pb.Message) -> IncomingMessage:
        """Convert a protobuf Message (from the Chat stream or from ListHistory)."""
        return cls(
            sequence=m.sequence,
            message_id=m.message_id,
            sender=m.sender,
            sender_display_name=m.sender_display_name,
            recipient=m.recipient,
            body=m.body,
            send_time=_time(m.send_time),
            client_id=m.client_id,
            group=m.group,
        )


@dataclass(frozen=True)
class HistoryPage:
    """One page of `Client.list_history`: `messages` newest first (their `sequence` is 0),
    and `next_page_token` for the next, older page ("" on the last page)."""

    messages: tuple[IncomingMessage, ...]
    next_page_token: str = ""


@dataclass(frozen=True)
class UserPage:
    """One page of `Client.list_users_page`: `users` sorted by username, and the
    `next_page_token` for the next page ("" on the last page)."""

    users: tuple[UserInfo, ...]
    next_page_token: str = ""


@dataclass(frozen=True)
class DeliveryReceipt:
    """Inbox entry: `recipient` acknowledged my message `message_id` (sent as `client_id`)."""

    sequence: int
    message_id: int
    client_id: str
    recipient: str
    delivery_time: datetime


@dataclass(frozen=True)
class GroupUpdate:
    """Inbox entry: `actor` changed `group`; `action` is "created", "added" or "left"."""

    sequence: int
    group: str
    action: str
    actor: str
    members: tuple[str, ...]
    update_time: datetime


#: Events that occupy a sequence in my inbox and must be acknowledged.
InboxEntry = IncomingMessage | DeliveryReceipt | GroupUpdate


@dataclass(frozen=True)
class SendConfirmed:
    """The server stored the message sent under `client_id`.

    `recipient` names who received it: the recipient's username (the one the server
    picked, for a random send) or the group name.
    """

    client_id: str
    message_id: int
    sequence: int
    send_time: datetime
    duplicate: bool
    recipient_online: bool
    recipient: str = ""


@dataclass(frozen=True)
class EventRejected:
    """The server refused one event I sent (`client_id` set if it was a send).

    `code` is the canonical status number as sent (compare `kind` instead), `reason` a
    stable machine-readable word such as "USER_NOT_FOUND", `retry` the server's flag:
    True if sending the same event again later may succeed.
    """

    request_index: int
    client_id: str
    code: int
    reason: str
    message: str
    field_violations: tuple[FieldViolation, ...] = ()
    retry: bool = False

    @property
    def kind(self) -> ErrorKind:
        """The refusal as an ErrorKind (NOT_FOUND, PERMISSION_DENIED, ...)."""
        return kind_of_code(self.code)

    def fields(self) -> set[str]:
        """The names of the fields the server complained about."""
        return {v.field for v in self.field_violations}


@dataclass(frozen=True)
class PresenceChanged:
    """Another user came online (`user.online`) or went offline."""

    user: UserInfo


@dataclass(frozen=True)
class GoingAway:
    """The server is closing this chat; reconnect after `reconnect_delay_ms` milliseconds."""

    reason: str
    message: str
    reconnect_delay_ms: int


@dataclass(frozen=True)
class Pong:
    """Answer to a ping with the same nonce."""

    nonce: int


@dataclass(frozen=True)
class Synced:
    """The replay of stored messages is complete up to `last_sequence`."""

    last_sequence: int


@dataclass(frozen=True)
class ConnectionLost:
    """(Conversation only) the chat dropped; a reconnect is under way."""

    message: str


@dataclass(frozen=True)
class Reconnected:
    """(Conversation only) the chat is back; `welcome` is the new stream's greeting."""

    welcome: Welcome


ChatEvent = (
    Welcome
    | IncomingMessage
    | DeliveryReceipt
    | GroupUpdate
    | SendConfirmed
    | EventRejected
    | PresenceChanged
    | GoingAway
    | Pong
    | Synced
    | ConnectionLost
    | Reconnected
)


_GROUP_ACTIONS: Final[dict[int, str]] = {
    pb.GROUP_ACTION_CREATED: "created",
    pb.GROUP_ACTION_MEMBERS_ADDED: "added",
    pb.GROUP_ACTION_MEMBERS_LEFT: "left",
}


def event_from_pb(resp: pb.ChatResponse) -> ChatEvent | None:
    """Convert one ChatResponse; None for an event kind this client does not know."""
    kind = resp.WhichOneof("event")
    if kind == "welcome":
        w = resp.welcome
        return Welcome(
            user=UserInfo.from_pb(w.user),
            online_users=tuple(UserInfo.from_pb(u) for u in w.online_users),
            acked_sequence=w.acked_sequence,
            last_sequence=w.last_sequence,
            history_id=w.history_id,
            resume_token=w.resume_token,
            session_expire_time=(
                _time(w.session_expire_time) if w.HasField("session_expire_time") else None
            ),
        )
    if kind == "message":
        return IncomingMessage.from_pb(resp.message)
    if kind == "send_result":
        return _confirmed(resp.send_result)
    if kind == "delivery_receipt":
        d = resp.delivery_receipt
        return DeliveryReceipt(
            sequence=d.sequence,
            message_id=d.message_id,
            client_id=d.client_id,
            recipient=d.recipient,
            delivery_time=_time(d.delivery_time),
        )
    if kind == "group_update":
        u = resp.group_update
        return GroupUpdate(
            sequence=u.sequence,
            group=u.group,
            action=_GROUP_ACTIONS.get(u.action, "changed"),
            actor=u.actor,
            members=tuple(u.members),
            update_time=_time(u.update_time),
        )
    if kind == "error":
        e = resp.error
        return EventRejected(
            request_index=e.request_index,
            client_id=e.client_id,
            code=e.code,
            reason=e.reason,
            message=e.message,
            field_violations=tuple(
                FieldViolation(v.field, v.description) for v in e.field_violations
            ),
            retry=e.retry,
        )
    if kind == "presence_change":
        return PresenceChanged(UserInfo.from_pb(resp.presence_change.user))
    if kind == "going_away":
        g = resp.going_away
        return GoingAway(g.reason, g.message, g.reconnect_delay_ms)
    if kind == "pong":
        return Pong(resp.pong.nonce)
    if kind == "synced":
        return Synced(resp.synced.last_sequence)
    return None


def _confirmed(r: pb.SendResult) -> SendConfirmed:
    return SendConfirmed(
        client_id=r.client_id,
        message_id=r.message_id,
        sequence=r.sequence,
        send_time=_time(r.send_time),
        duplicate=r.duplicate,
        recipient_online=r.recipient_online,
        recipient=r.recipient,
    )
