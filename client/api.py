"""The async Hubbub client library: the only code that touches gRPC and protobuf.

Everything it returns is a plain frozen dataclass (`UserInfo`, `LoginResult`, the
chat events) and every failure is a `HubbubError` with an `ErrorKind`, so callers
(the CLI, scripts, tests) never see protobuf objects or grpc exceptions.

Typical use::

    async with await Client.connect("127.0.0.1:50051") as client:
        await client.login("alice", "secret-password")
        chat = await client.open_chat()
        chat.resume()
        chat.send("echobot", "hello")
        async for event in chat:
            ...

`Conversation` wraps a `Client` into a chat that survives connection loss
(reconnect with backoff, failover to the next server address, takeover of its own
stale stream with the Welcome's resume token, resume within the right history,
resend of unconfirmed messages) and obeys the server's retry flag: a refusal that
cannot succeed later is reported, never retried forever.

A `Client` takes a `ServerTarget` (see `hubbub.client.target`) or an address text:
"host:port", a comma list of nodes, or `grpcs://host:port` for TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Self

import grpc
import grpc.aio
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2, status_pb2

from hubbub.v1 import messenger_pb2 as pb
from hubbub.v1 import messenger_pb2_grpc as pb_grpc

from .backoff import Backoff
from .target import ServerTarget, parse_target

DEFAULT_SERVER: Final = "127.0.0.1:50051"

#: The largest page ListHistory serves.
MAX_HISTORY_PAGE: Final = 500

#: The page size `list_users` asks for (the server's maximum, AIP-158).
USERS_PAGE_SIZE: Final = 1000

#: Metadata key of the Chat call that proves a reconnect is the same client (the
#: resume_token of its last Welcome), so the server hands it the stale stream at once.
RESUME_TOKEN_KEY: Final = "hubbub-resume-token"

#: Resume refusals after which a Conversation resyncs from the acknowledged sequence.
RESYNC_REASONS: Final = frozenset({"HISTORY_CHANGED", "RESUME_BEYOND_END"})

#: Reason of the ABORTED status that ends a stream taken over by a newer one.
SESSION_TAKEN_OVER: Final = "SESSION_TAKEN_OVER"

#: How many times in a row a reconnect that carried a resume token is retried after
#: ALREADY_EXISTS (with backoff) before the Conversation gives up.
MAX_TAKEOVER_REFUSALS: Final = 10

#: Channel options: keepalive so a dead peer is noticed in well under a minute, and a
#: short reconnect backoff inside grpc (our own backoff sits on top of it).
CHANNEL_OPTIONS: Final[list[tuple[str, int]]] = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 4_000),
    # gRPC core only drops a connection whose keepalive ping went unanswered after its
    # HTTP/2 ping timeout (default 60 s), so the two must be set together.
    ("grpc.http2.ping_timeout_ms", 4_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]

_STATUS_DETAILS_KEY: Final = "grpc-status-details-bin"

# --- errors -------------------------------------------------------------------------------


class ErrorKind(enum.Enum):
    """What went wrong, in the terms of the standard status codes the server uses."""

    UNAVAILABLE = "unavailable"
    UNAUTHENTICATED = "unauthenticated"
    ALREADY_EXISTS = "already_exists"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    INVALID_ARGUMENT = "invalid_argument"
    NOT_FOUND = "not_found"
    PERMISSION_DENIED = "permission_denied"
    FAILED_PRECONDITION = "failed_precondition"
    ABORTED = "aborted"
    OUT_OF_RANGE = "out_of_range"
    UNIMPLEMENTED = "unimplemented"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    CANCELLED = "cancelled"
    INTERNAL = "internal"
    OTHER = "other"


_KIND_BY_CODE: Final[dict[grpc.StatusCode, ErrorKind]] = {
    grpc.StatusCode.UNAVAILABLE: ErrorKind.UNAVAILABLE,
    grpc.StatusCode.UNAUTHENTICATED: ErrorKind.UNAUTHENTICATED,
    grpc.StatusCode.ALREADY_EXISTS: ErrorKind.ALREADY_EXISTS,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ErrorKind.RESOURCE_EXHAUSTED,
    grpc.StatusCode.INVALID_ARGUMENT: ErrorKind.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND: ErrorKind.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED: ErrorKind.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION: ErrorKind.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED: ErrorKind.ABORTED,
    grpc.StatusCode.OUT_OF_RANGE: ErrorKind.OUT_OF_RANGE,
    grpc.StatusCode.UNIMPLEMENTED: ErrorKind.UNIMPLEMENTED,
    grpc.StatusCode.DEADLINE_EXCEEDED: ErrorKind.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED: ErrorKind.CANCELLED,
    grpc.StatusCode.INTERNAL: ErrorKind.INTERNAL,
}

#: The kind of a canonical status number (google.rpc.Code), as Error events carry it.
_KIND_BY_NUMBER: Final[dict[int, ErrorKind]] = {
    code.value[0]: kind for code, kind in _KIND_BY_CODE.items()
}


def kind_of_code(code: int) -> ErrorKind:
    """The ErrorKind of a canonical status number (e.g. 5 → NOT_FOUND; unknown → OTHER)."""
    return _KIND_BY_NUMBER.get(code, ErrorKind.OTHER)


#: Kinds after which a chat is worth reopening (the others are refusals).
TRANSIENT_KINDS: Final = frozenset(
    {
        ErrorKind.UNAVAILABLE,
        ErrorKind.CANCELLED,
        ErrorKind.DEADLINE_EXCEEDED,
        ErrorKind.INTERNAL,
        ErrorKind.OTHER,
    }
)

#: Kinds that may succeed later unchanged when the server sends no retry flag.
RETRYABLE_KINDS: Final = TRANSIENT_KINDS | {ErrorKind.RESOURCE_EXHAUSTED}


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request: `field` is a path such as "send.body"."""

    field: str
    description: str


class HubbubError(Exception):
    """A call failed: `kind` says how, `message` is the server's sentence for a person.

    `field_violations` lists bad request fields (from google.rpc.BadRequest details);
    `reason` is the server's stable machine-readable word (google.rpc.ErrorInfo), such as
    "GROUP_NOT_FOUND" or "USER_NOT_FOUND", or "" if the server sent none. `retry` is the
    server's ErrorInfo metadata["retry"] (True/False; None if it sent none) and
    `retry_delay` the google.rpc.RetryInfo delay in seconds (None if none).
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        field_violations: Iterable[FieldViolation] = (),
        *,
        reason: str = "",
        retry: bool | None = None,
        retry_delay: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.field_violations: tuple[FieldViolation, ...] = tuple(field_violations)
        self.reason = reason
        self.retry = retry
        self.retry_delay = retry_delay

    @property
    def retryable(self) -> bool:
        """True if the same call may succeed later unchanged.

        The server's flag decides when it sent one; otherwise the kind does
        (UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, ... yes; refusals no).
        """
        if self.retry is not None:
            return self.retry
        return self.kind in RETRYABLE_KINDS

    def fields(self) -> set[str]:
        """The names of the fields the server complained about."""
        return {v.field for v in self.field_violations}

    def detail(self) -> str:
        """The field problems joined by "; " if there are any, else `message`."""
        return "; ".join(v.description for v in self.field_violations) or self.message

    def __repr__(self) -> str:
        return f"HubbubError({self.kind.name}, {self.message!r})"


def _status_details(metadata: Any) -> list[Any]:
    """The google.protobuf.Any details of a google.rpc.Status in trailing metadata."""
    out: list[Any] = []
    if not metadata:
        return out
    for item in metadata:
        try:
            key, value = item
        except (TypeError, ValueError):
            continue
        if key != _STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status()
        try:
            status.ParseFromString(value)
        except Exception:  # a damaged detail is ignored, the status code still counts
            continue
        out.extend(status.details)
    return out


def _violations_from_metadata(metadata: Any) -> list[FieldViolation]:
    """Extract google.rpc.BadRequest field violations from trailing metadata, if any."""
    out: list[FieldViolation] = []
    for detail in _status_details(metadata):
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out.extend(FieldViolation(v.field, v.description) for v in bad.field_violations)
    return out


def _reason_from_metadata(metadata: Any) -> str:
    """The google.rpc.ErrorInfo reason in trailing metadata, or "" if there is none."""
    return _error_info(metadata)[0]


def _error_info(metadata: Any) -> tuple[str, bool | None, float | None]:
    """(reason, retry flag, retry delay in seconds) from the status details.

    The reason and `metadata["retry"]` ("true"/"false") come from google.rpc.ErrorInfo,
    the delay from google.rpc.RetryInfo; each is ""/None when the server sent none.
    """
    reason, retry, delay = "", None, None
    for detail in _status_details(metadata):
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = str(info.reason)
            flag = info.metadata.get("retry", "").strip().lower()
            if flag in ("true", "false"):
                retry = flag == "true"
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry_info = error_details_pb2.RetryInfo()
            detail.Unpack(retry_info)
            delay = retry_info.retry_delay.ToTimedelta().total_seconds()
    return reason, retry, delay


def unreachable(where: str) -> str:
    """The sentence for a server that cannot be reached; `where` is "host:port", or
    "grpcs://host:port" for TLS (then a refused certificate is the other likely cause)."""
    if where.startswith("grpcs://"):
        return (
            f"Cannot reach the Hubbub server at {where} (down, not speaking TLS, or its "
            "certificate is not trusted)."
        )
    return f"Cannot reach the Hubbub server at {where}."


def _error_from_rpc(exc: grpc.RpcError, address: str) -> HubbubError:
    """Turn a grpc error into a HubbubError with a human sentence."""
    code = exc.code()
    kind = _KIND_BY_CODE.get(code, ErrorKind.OTHER)
    details = exc.details() or ""
    if kind is ErrorKind.UNAVAILABLE:
        details = unreachable(address)
    try:
        metadata = exc.trailing_metadata()
    except Exception:
        metadata = None
    reason, retry, delay = _error_info(metadata)
    return HubbubError(
        kind,
        details or "The server refused the request.",
        _violations_from_metadata(metadata),
        reason=reason,
        retry=retry,
        retry_delay=delay,
    )


# --- plain data ---------------------------------------------------------------------------


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


def new_client_id() -> str:
    """A fresh random client id for a SendMessage (32 hex characters)."""
    return uuid.uuid4().hex


# --- the chat stream ----------------------------------------------------------------------


@dataclass(frozen=True)
class _End:
    error: HubbubError | None


class _Requests:
    """The request stream of a Chat call: queued events until None (half-close).

    A plain async iterator rather than an async generator, so that grpc cancelling
    its consumer task never leaves a half-finished generator to be finalised.
    """

    def __init__(self, outbox: asyncio.Queue[pb.ChatRequest | None]) -> None:
        self._outbox = outbox
        self._done = False

    def __aiter__(self) -> _Requests:
        return self

    async def __anext__(self) -> pb.ChatRequest:
        if self._done:
            raise StopAsyncIteration
        item = await self._outbox.get()
        if item is None:
            self._done = True
            raise StopAsyncIteration
        return item


class Chat:
    """One live Chat stream. Create it with `Client.open_chat()`.

    Writing (`resume`, `send`, `ack`, `ping`) only queues the event, so it never
    blocks; one reader task turns server events into dataclasses that
    `async for event in chat` yields. Iteration ends when the server ends the
    stream normally and raises HubbubError if the stream fails (for example
    ErrorKind.UNAVAILABLE when the connection drops).
    """

    def __init__(self, call: Any, outbox: asyncio.Queue[pb.ChatRequest | None], address: str):
        self._call = call
        self._outbox = outbox
        self._address = address
        self._events: asyncio.Queue[ChatEvent | _End] = asyncio.Queue()
        self._ended: _End | None = None
        self._write_closed = False
        self._reader = asyncio.create_task(self._read_loop())
        self.welcome: Welcome | None = None

    async def _read_loop(self) -> None:
        end = _End(None)
        try:
            while True:
                resp = await self._call.read()
                if not isinstance(resp, pb.ChatResponse):  # grpc.aio.EOF: the stream ended
                    break
                event = event_from_pb(resp)
                if event is not None:
                    self._events.put_nowait(event)
        except grpc.RpcError as exc:
            end = _End(_error_from_rpc(exc, self._address))
        except asyncio.CancelledError:
            end = _End(HubbubError(ErrorKind.CANCELLED, "The chat was closed."))
        except Exception as exc:  # never let a broken stream escape as a traceback
            end = _End(HubbubError(ErrorKind.OTHER, f"The chat stream failed: {exc}."))
        # Let the request stream finish too, so grpc's sending task ends cleanly.
        if not self._write_closed:
            self._write_closed = True
            self._outbox.put_nowait(None)
        self._events.put_nowait(end)

    async def _first_event(self, within: float) -> Welcome:
        try:
            item = await asyncio.wait_for(self._events.get(), within)
        except TimeoutError:
            self.cancel()
            raise HubbubError(ErrorKind.UNAVAILABLE, unreachable(self._address)) from None
        if isinstance(item, _End):
            self._ended = item
            raise item.error or HubbubError(ErrorKind.OTHER, "The server closed the chat at once.")
        if not isinstance(item, Welcome):
            self.cancel()
            raise HubbubError(ErrorKind.INTERNAL, "The server did not greet the chat.")
        self.welcome = item
        return item

    def _put(self, request: pb.ChatRequest) -> None:
        if not self._write_closed:
            self._outbox.put_nowait(request)

    def resume(self, after_sequence: int | None = None, history_id: str = "") -> None:
        """Start delivery after inbox sequence `after_sequence` (None: the server's cursor).

        `history_id` is the Welcome.history_id that `after_sequence` belongs to ("" if
        unknown); a server with another history answers HISTORY_CHANGED and replays from
        the acknowledged sequence.
        """
        resume = pb.Resume(history_id=history_id)
        if after_sequence is not None:
            resume.after_sequence = after_sequence
        self._put(pb.ChatRequest(resume=resume))

    def send(
        self,
        recipient: str,
        body: str,
        client_id: str | None = None,
        *,
        group: str = "",
        random_recipient: bool = False,
    ) -> str:
        """Queue a message to `recipient`, or to `group` if set, or, if `random_recipient`,
        to one online user the server picks (SendConfirmed.recipient names them).

        Returns its client id (a new one if not given).
        """
        cid = client_id or new_client_id()
        message = pb.SendMessage(client_id=cid, body=body)
        if random_recipient:
            message.random_recipient = True
        elif group:
            message.group = group
        else:
            message.recipient = recipient
        self._put(pb.ChatRequest(send=message))
        return cid

    def ack(self, sequence: int) -> None:
        """Acknowledge every inbox message up to and including `sequence`."""
        self._put(pb.ChatRequest(ack=pb.Ack(sequence=sequence)))

    def ping(self, nonce: int = 0) -> None:
        """Ask the server for a Pong carrying `nonce`."""
        self._put(pb.ChatRequest(ping=pb.Ping(nonce=nonce)))

    def close_writing(self) -> None:
        """Half-close: the server answers what it read, delivers what is pending, then ends."""
        if not self._write_closed:
            self._write_closed = True
            self._outbox.put_nowait(None)

    @property
    def ended(self) -> bool:
        """True once the stream has finished (normally or not) and all events were read."""
        return self._ended is not None

    def cancel(self) -> None:
        """Abort the stream at once."""
        self._write_closed = True
        self._call.cancel()

    async def wait_closed(self, grace: float = 2.0) -> None:
        """Wait up to `grace` seconds for the stream to end, then cancel it."""
        try:
            await asyncio.wait_for(asyncio.shield(self._reader), grace)
        except TimeoutError:
            self.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._reader, 1.0)

    async def aclose(self, grace: float = 2.0) -> None:
        """Half-close, wait up to `grace` seconds for the server to end the stream, cancel."""
        self.close_writing()
        await self.wait_closed(grace)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ChatEvent:
        if self._ended is not None:
            raise StopAsyncIteration
        item = await self._events.get()
        if isinstance(item, _End):
            self._ended = item
            if item.error is not None:
                raise item.error
            raise StopAsyncIteration
        return item


# --- the client ---------------------------------------------------------------------------


def _channel_credentials(target: ServerTarget) -> grpc.ChannelCredentials | None:
    """TLS credentials for `target` (its CA file, or the system roots), None for plaintext.

    Raises HubbubError(INVALID_ARGUMENT) if the CA file cannot be read.
    """
    if not target.tls:
        return None
    roots: bytes | None = None
    if target.ca_file:
        try:
            with open(target.ca_file, "rb") as fh:
                roots = fh.read()
        except OSError as exc:
            raise HubbubError(
                ErrorKind.INVALID_ARGUMENT,
                f"Cannot read the CA file {target.ca_file}: {exc.strerror or exc}.",
            ) from None
    return grpc.ssl_channel_credentials(root_certificates=roots)


class Client:
    """A connection to a Hubbub service and, after login, a session token.

    `target` is a `ServerTarget` or an address text ("host:port", a comma list of the
    nodes of one cluster, `grpcs://host:port` for TLS); `tls` and `ca_file` (a PEM file
    of trusted roots; the system roots if "") switch TLS on for a text target. The
    client talks to one address at a time (`address`); `reset_channel()` moves on to the
    next one, so a `Conversation` fails over when a node dies.

    Every method raises HubbubError on failure (ErrorKind.UNAVAILABLE when the
    server cannot be reached). Use `await Client.connect(target)` to fail early when
    the server is down, and `async with` (or `close()`) to release the channel. A CA
    file that cannot be read raises HubbubError(INVALID_ARGUMENT) at construction.
    """

    def __init__(
        self,
        target: str | ServerTarget = DEFAULT_SERVER,
        *,
        token: str | None = None,
        tls: bool = False,
        ca_file: str = "",
    ) -> None:
        if isinstance(target, ServerTarget):
            self.target = target.with_tls(tls, ca_file)
        else:
            self.target = parse_target(target, tls=tls, ca_file=ca_file)
        self.token = token
        self.username: str | None = None
        self._index = 0
        self._credentials = _channel_credentials(self.target)
        self._channel = self._new_channel()
        self._stub = pb_grpc.MessengerServiceStub(self._channel)

    @property
    def address(self) -> str:
        """The "host:port" this client talks to now."""
        return self.target.addresses[self._index]

    @property
    def where(self) -> str:
        """`address` as shown in messages: "grpcs://host:port" when TLS is on."""
        return f"grpcs://{self.address}" if self.target.tls else self.address

    def _new_channel(self) -> grpc.aio.Channel:
        if self._credentials is None:
            return grpc.aio.insecure_channel(self.address, options=CHANNEL_OPTIONS)
        return grpc.aio.secure_channel(self.address, self._credentials, options=CHANNEL_OPTIONS)

    @classmethod
    async def connect(
        cls,
        target: str | ServerTarget = DEFAULT_SERVER,
        *,
        token: str | None = None,
        within: float = 5.0,
        tls: bool = False,
        ca_file: str = "",
    ) -> Client:
        """Create a client and wait up to `within` seconds per address for a server to answer.

        The addresses are tried in turn; the client keeps the first that answers.
        Raises HubbubError(ErrorKind.UNAVAILABLE) if none can be reached.
        """
        client = cls(target, token=token, tls=tls, ca_file=ca_file)
        try:
            for attempt in range(len(client.target.addresses)):
                if attempt:
                    await client.reset_channel()
                last = attempt == len(client.target.addresses) - 1
                try:
                    await client.wait_ready(within, fail_fast=not last)
                except HubbubError:
                    if last:
                        raise
                    continue
                break
        except BaseException:
            await client.close()
            raise
        return client

    async def wait_ready(self, within: float = 5.0, *, fail_fast: bool = False) -> None:
        """Wait until the channel is connected; HubbubError(UNAVAILABLE) after `within` s,
        or as soon as a connection attempt fails if `fail_fast` (to try another address)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        state = self._channel.get_state(try_to_connect=True)
        while state is not grpc.ChannelConnectivity.READY:
            remaining = deadline - loop.time()
            failed = fail_fast and state is grpc.ChannelConnectivity.TRANSIENT_FAILURE
            if failed or remaining <= 0:
                raise HubbubError(ErrorKind.UNAVAILABLE, unreachable(self.where))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._channel.wait_for_state_change(state), remaining)
            state = self._channel.get_state(try_to_connect=True)

    async def reset_channel(self) -> None:
        """Replace the channel with a fresh one to the NEXT address (round robin; the
        same one if there is only one). Used before reconnecting."""
        old = self._channel
        self._index = (self._index + 1) % len(self.target.addresses)
        self._channel = self._new_channel()
        self._stub = pb_grpc.MessengerServiceStub(self._channel)
        with contextlib.suppress(Exception):
            await old.close(None)

    async def close(self) -> None:
        """Close the channel; calls in progress are cancelled."""
        with contextlib.suppress(Exception):
            await self._channel.close(None)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        if not self.token:
            raise HubbubError(ErrorKind.UNAUTHENTICATED, "Not logged in.")
        return (("authorization", f"Bearer {self.token}"),)

    async def register(self, username: str, password: str, display_name: str = "") -> UserInfo:
        """Create an account; returns it.

        Errors: INVALID_ARGUMENT (bad name, password or display name; see
        `field_violations`), ALREADY_EXISTS (name taken).
        """
        request = pb.RegisterRequest(
            username=username, password=password, display_name=display_name
        )
        try:
            response = await self._stub.Register(request, timeout=30)
        except grpc.RpcError as exc:
            raise _error_from_rpc(exc, self.where) from None
        return UserInfo.from_pb(response.user)

    async def login(self, username: str, password: str) -> LoginResult:
        """Log in and keep the token for later calls.

        Errors: UNAUTHENTICATED (unknown user or wrong password), RESOURCE_EXHAUSTED
        (too many failed attempts), INVALID_ARGUMENT.
        """
        try:
            response = await self._stub.Login(
                pb.LoginRequest(username=username, password=password), timeout=30
            )
        except grpc.RpcError as exc:
            raise _error_from_rpc(exc, self.where) from None
        self.token = response.token
        user = UserInfo.from_pb(response.user)
        self.username = user.username or username
        return LoginResult(response.token, _time(response.expire_time), user)

    async def logout(self) -> None:
        """Revoke the current token (and forget it). Errors: UNAUTHENTICATED."""
        metadata = self._metadata()
        try:
            await self._stub.Logout(pb.LogoutRequest(), metadata=metadata, timeout=10)
        except grpc.RpcError as exc:
            raise _error_from_rpc(exc, self.where) from None
        finally:
            self.token = None

    async def list_users_page(
        self, online_only: bool = False, page_size: int = 0, page_token: str = ""
    ) -> UserPage:
        """One page of users sorted by username (AIP-158).

        `page_size` is 1-1000 (0: the server's default of 100); pass the previous page's
        `next_page_token` for the next page, with the same `online_only`.
        Errors: UNAUTHENTICATED, INVALID_ARGUMENT (bad page size or token).
        """
        request = pb.ListUsersRequest(
            online_only=online_only, page_size=page_size, page_token=page_token
        )
        response = await self._unary(self._stub.ListUsers, request)
        return UserPage(
            tuple(UserInfo.from_pb(u) for u in response.users), response.next_page_token
        )

    async def list_users(
        self, online_only: bool = False, page_size: int = USERS_PAGE_SIZE
    ) -> list[UserInfo]:
        """Every user (or those online), sorted by username, paging until the last page.

        Errors: UNAUTHENTICATED; INTERNAL if the server hands out the same page token twice
        (a loop that would never end).
        """
        users: list[UserInfo] = []
        token = ""
        seen: set[str] = set()
        while True:
            page = await self.list_users_page(online_only, page_size, token)
            users.extend(page.users)
            token = page.next_page_token
            if not token:
                return users
            if token in seen:
                raise HubbubError(ErrorKind.INTERNAL, "The server repeated a page of users.")
            seen.add(token)

    async def _unary(self, method: Any, request: Any, deadline: float = 10) -> Any:
        """Call one authenticated unary RPC (`deadline` seconds); errors become HubbubError."""
        metadata = self._metadata()
        try:
            return await method(request, metadata=metadata, timeout=deadline)
        except grpc.RpcError as exc:
            raise _error_from_rpc(exc, self.where) from None

    async def update_profile(
        self,
        display_name: str | None = None,
        new_password: str = "",
        current_password: str = "",
    ) -> UserInfo:
        """Change my display name (None keeps it) and/or password ("" keeps it); returns me.

        A new password needs `current_password` and logs out every other session of
        mine (this client's token stays valid). Errors: INVALID_ARGUMENT (bad display
        name or password, see `field_violations`), UNAUTHENTICATED (wrong current password).
        """
        request = pb.UpdateProfileRequest(
            new_password=new_password, current_password=current_password
        )
        if display_name is not None:
            request.display_name = display_name
        response = await self._unary(self._stub.UpdateProfile, request, deadline=30)
        return UserInfo.from_pb(response.user)

    async def create_group(self, name: str, members: Iterable[str] = ()) -> GroupInfo:
        """Create group `name` (a leading '#' is ignored) with me and `members`; returns it.

        Errors: INVALID_ARGUMENT (bad name), ALREADY_EXISTS (name taken, reason
        GROUP_NAME_TAKEN), NOT_FOUND (a member does not exist; the message names it).
        """
        request = pb.CreateGroupRequest(name=name, members=list(members))
        response = await self._unary(self._stub.CreateGroup, request)
        return GroupInfo.from_pb(response.group)

    async def add_group_members(self, group: str, members: Iterable[str]) -> GroupInfo:
        """Add `members` to `group` (I must belong to it); returns the group after the change.

        Errors: NOT_FOUND (reason GROUP_NOT_FOUND or USER_NOT_FOUND), PERMISSION_DENIED
        (reason NOT_A_MEMBER), INVALID_ARGUMENT (no members named).
        """
        request = pb.AddGroupMembersRequest(group=group, members=list(members))
        response = await self._unary(self._stub.AddGroupMembers, request)
        return GroupInfo.from_pb(response.group)

    async def leave_group(self, group: str) -> None:
        """Leave `group`. Errors: NOT_FOUND (no such group), PERMISSION_DENIED (not a member)."""
        await self._unary(self._stub.LeaveGroup, pb.LeaveGroupRequest(group=group))

    async def list_groups(self) -> list[GroupInfo]:
        """The groups I belong to, sorted by name, with their members."""
        response = await self._unary(self._stub.ListGroups, pb.ListGroupsRequest())
        return [GroupInfo.from_pb(g) for g in response.groups]

    async def send_message(
        self,
        recipient: str,
        body: str,
        client_id: str | None = None,
        *,
        group: str = "",
        random_recipient: bool = False,
    ) -> SendConfirmed:
        """Store one message with the unary SendMessage RPC (no Chat stream, so it works
        while my chat is open elsewhere); returns the stored result.

        Destination as in `Chat.send`. Errors: INVALID_ARGUMENT (bad body or client id,
        see `field_violations`), NOT_FOUND (no such user or group), PERMISSION_DENIED (not
        a member of the group), FAILED_PRECONDITION (nobody else online for a random send,
        or the client id was used for another message), UNAUTHENTICATED.
        """
        request = pb.SendMessageRequest(client_id=client_id or new_client_id(), body=body)
        if random_recipient:
            request.random_recipient = True
        elif group:
            request.group = group
        else:
            request.recipient = recipient
        response = await self._unary(self._stub.SendMessage, request, deadline=30)
        return _confirmed(response.result)

    async def list_history(
        self,
        *,
        username: str | None = None,
        group: str | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> HistoryPage:
        """One page of my direct messages with `username`, or of `group`, newest first.

        Exactly one of `username` and `group` must be given. `page_size` is 1-500 (0: the
        server's default of 50); pass the previous page's `next_page_token` for older
        messages. Errors: NOT_FOUND (no such user or group), PERMISSION_DENIED (not a
        member of the group), INVALID_ARGUMENT (bad page size or token).
        """
        if (username is None) == (group is None):
            raise ValueError("list_history needs exactly one of username and group")
        request = pb.ListHistoryRequest(page_size=page_size, page_token=page_token)
        if username is not None:
            request.username = username
        else:
            assert group is not None
            request.group = group
        response = await self._unary(self._stub.ListHistory, request)
        return HistoryPage(
            tuple(IncomingMessage.from_pb(m) for m in response.messages),
            response.next_page_token,
        )

    async def recent_history(
        self, *, username: str | None = None, group: str | None = None, count: int = 20
    ) -> list[IncomingMessage]:
        """The last `count` messages of a conversation, OLDEST first (pages as needed).

        Same arguments and errors as `list_history`.
        """
        newest_first: list[IncomingMessage] = []
        token = ""
        while len(newest_first) < count:
            page = await self.list_history(
                username=username,
                group=group,
                page_size=min(count - len(newest_first), MAX_HISTORY_PAGE),
                page_token=token,
            )
            newest_first.extend(page.messages)
            token = page.next_page_token
            if not token or not page.messages:
                break
        return newest_first[:count][::-1]

    async def open_chat(self, within: float = 10.0, *, resume_token: str = "") -> Chat:
        """Open the Chat stream and wait for its Welcome (in `chat.welcome`).

        `resume_token` (the Welcome.resume_token of this client's previous stream) is sent
        as `hubbub-resume-token` metadata so that stream, if still registered, is taken
        over at once. Nothing is delivered until the caller sends a first event (normally
        `chat.resume()`). Errors: UNAUTHENTICATED, ALREADY_EXISTS (already online
        elsewhere), RESOURCE_EXHAUSTED (server full), UNAVAILABLE.
        """
        metadata = self._metadata()
        if resume_token:
            metadata = (*metadata, (RESUME_TOKEN_KEY, resume_token))
        outbox: asyncio.Queue[pb.ChatRequest | None] = asyncio.Queue()
        call = self._stub.Chat(_Requests(outbox), metadata=metadata)
        chat = Chat(call, outbox, self.where)
        await chat._first_event(within)
        return chat


# --- a chat that survives connection loss -------------------------------------------------


@dataclass
class _Pending:
    recipient: str
    body: str
    group: str = ""
    random_recipient: bool = False


@dataclass
class Conversation:
    """A chat that reconnects by itself and shows every message at least once, in order.

    Iterate it from ONE task. It yields the Chat events, filtered: inbox entries
    (messages, receipts, group updates) with a sequence at or below `last_shown` are
    dropped (call `ack(seq)` once one is shown or handled); SendConfirmed and
    EventRejected come only for sends still unconfirmed. When the stream drops it
    yields ConnectionLost once, reconnects with `backoff` to the client's next address
    (logging in again with `password` if the token is refused, sending the last
    Welcome's resume token so a stale stream of its own is taken over at once), resumes
    after `last_shown`, re-sends unconfirmed messages under their original client ids
    and yields Reconnected.

    Position and history: `last_shown` only means something within `history_id` (the
    Welcome's). If a new Welcome names another history, or its last sequence is below
    `last_shown` (the server was restored from a backup), or the server refuses the
    Resume with HISTORY_CHANGED / RESUME_BEYOND_END, the conversation forgets its
    position and every "already shown" mark above the acknowledged sequence and takes
    what follows as new: at worst a message is shown twice, never skipped.

    Retries: the server's retry flag decides (google.rpc.ErrorInfo metadata["retry"]),
    and RetryInfo / GoingAway delays are waited. Without a flag, UNAVAILABLE and other
    transient failures and RESOURCE_EXHAUSTED are retried; UNAUTHENTICATED (when no
    password can log in again), ABORTED (SESSION_TAKEN_OVER: a newer stream of this
    client took over), PERMISSION_DENIED, INVALID_ARGUMENT, and ALREADY_EXISTS without a
    resume token (another login of the same user is online) end the iteration with that
    HubbubError; ALREADY_EXISTS despite a resume token is retried at most
    MAX_TAKEOVER_REFUSALS times in a row.
    """

    client: Client
    password: str | None = None
    backoff: Backoff = field(default_factory=Backoff)
    last_shown: int = 0
    pending: dict[str, _Pending] = field(default_factory=dict)
    chat: Chat | None = None
    welcome: Welcome | None = None
    #: The Welcome.history_id that `last_shown` belongs to ("" if unknown).
    history_id: str = ""
    #: The resume token of the last Welcome, sent when reconnecting ("" if none).
    resume_token: str = ""
    _closing: bool = False
    _announced: bool = False
    _away_delay: float = 0.0
    _up_since: float = 0.0
    #: A stream must stay up this long (seconds) before the backoff starts over, so a
    #: server that accepts and then drops every stream is not hammered.
    stable_after: float = 5.0

    async def start(self, after_sequence: int | None = None, history_id: str = "") -> Welcome:
        """Open the first stream and resume (after `after_sequence`, default the server cursor).

        `history_id` is the history `after_sequence` belongs to, if the caller kept one.
        Raises HubbubError on refusal (ALREADY_EXISTS, RESOURCE_EXHAUSTED,
        UNAUTHENTICATED, UNAVAILABLE).
        """
        chat = await self.client.open_chat()
        self.history_id = history_id
        self._adopt(chat, after_sequence)
        assert chat.welcome is not None
        return chat.welcome

    def _adopt(self, chat: Chat, after_sequence: int | None) -> None:
        """Make `chat` the live stream and send its Resume (resyncing if the position is
        not valid in the new Welcome's history)."""
        welcome = chat.welcome
        assert welcome is not None
        self.chat, self.welcome = chat, welcome
        self._up_since = time.monotonic()
        self.resume_token = welcome.resume_token
        if after_sequence is not None and self._position_is_stale(welcome, after_sequence):
            after_sequence = None
        if after_sequence is None:
            self.last_shown = welcome.acked_sequence
            chat.resume()
        else:
            self.last_shown = after_sequence
            if self.history_id:
                chat.resume(after_sequence, history_id=self.history_id)
            else:
                chat.resume(after_sequence)
            if after_sequence > welcome.acked_sequence:
                chat.ack(after_sequence)
        self.history_id = welcome.history_id

    def _position_is_stale(self, welcome: Welcome, position: int) -> bool:
        """True if `position` cannot belong to the history `welcome` describes."""
        if self.history_id and welcome.history_id and welcome.history_id != self.history_id:
            return True
        return welcome.last_sequence < position

    def _resync(self) -> None:
        """Forget the position: the server replays from its acknowledged sequence."""
        if self.welcome is not None:
            self.last_shown = self.welcome.acked_sequence
            self.history_id = self.welcome.history_id

    @property
    def connected(self) -> bool:
        """True while a stream is open."""
        return self.chat is not None

    def send(
        self, recipient: str, body: str, *, group: str = "", random_recipient: bool = False
    ) -> str:
        """Send to `recipient`, `group` or (`random_recipient`) an online user the server
        picks, now or after the next reconnect; returns the client id, which
        SendConfirmed / EventRejected will carry."""
        cid = new_client_id()
        self.pending[cid] = _Pending(recipient, body, group, random_recipient)
        if self.chat is not None:
            self.chat.send(recipient, body, cid, group=group, random_recipient=random_recipient)
        return cid

    def send_random(self, body: str) -> str:
        """Send `body` to one other online user the server picks (SendConfirmed.recipient
        names them; EventRejected with reason NOBODY_ONLINE if nobody else is online)."""
        return self.send("", body, random_recipient=True)

    def ack(self, sequence: int) -> None:
        """Record that the message `sequence` was shown and acknowledge it."""
        if sequence > self.last_shown:
            self.last_shown = sequence
        if self.chat is not None:
            self.chat.ack(sequence)

    async def close(self, grace: float = 2.0) -> None:
        """Half-close the stream and wait up to `grace` seconds for it to end."""
        self._closing = True
        if self.chat is not None:
            await self.chat.aclose(grace)

    def __aiter__(self) -> Self:
        return self

    def _lost(self, message: str) -> ChatEvent | None:
        self.chat = None
        if time.monotonic() - self._up_since >= self.stable_after:
            self.backoff.reset()
        if self._announced:
            return None
        self._announced = True
        return ConnectionLost(message)

    def _stream_end_is_final(self, exc: HubbubError) -> bool:
        """True if a live stream that ended with `exc` must not be reopened."""
        if exc.kind is ErrorKind.UNAUTHENTICATED:
            # With a password, one new login decides (a changed password then fails).
            return self.password is None
        if exc.kind in (
            ErrorKind.ABORTED,
            ErrorKind.PERMISSION_DENIED,
            ErrorKind.INVALID_ARGUMENT,
        ):
            return True
        return exc.retry is False

    async def __anext__(self) -> ChatEvent:
        while True:
            if self._closing and (self.chat is None or self.chat.ended):
                raise StopAsyncIteration
            if self.chat is None:
                welcome = await self._reconnect()
                self._announced = False
                return Reconnected(welcome)
            try:
                event = await self.chat.__anext__()
            except StopAsyncIteration:
                if self._closing:
                    raise
                lost = self._lost("The server closed the connection.")
            except HubbubError as exc:
                if self._closing:
                    raise StopAsyncIteration from None
                if self._stream_end_is_final(exc):
                    self.chat = None
                    self._closing = True
                    raise
                if exc.kind is ErrorKind.RESOURCE_EXHAUSTED:
                    self._away_delay = max(self._away_delay, 1.0)
                if exc.retry_delay is not None:
                    self._away_delay = max(self._away_delay, exc.retry_delay)
                lost = self._lost(exc.message)
            else:
                shown = self._filter(event)
                if shown is not None:
                    return shown
                continue
            if lost is not None:
                return lost

    def _filter(self, event: ChatEvent) -> ChatEvent | None:
        if isinstance(event, IncomingMessage | DeliveryReceipt | GroupUpdate):
            return event if event.sequence > self.last_shown else None
        if isinstance(event, SendConfirmed):
            return event if self.pending.pop(event.client_id, None) is not None else None
        if isinstance(event, EventRejected):
            if event.client_id:
                return event if self.pending.pop(event.client_id, None) is not None else None
            if event.reason in RESYNC_REASONS:
                self._resync()
                return None
            if any(f.startswith("ack") for f in event.fields()):
                return None  # an ack of a position from before a resync: nothing to show
            return event
        if isinstance(event, GoingAway):
            self._away_delay = event.reconnect_delay_ms / 1000
            if self.chat is not None:
                self.chat.close_writing()
            if self._announced:
                return None
            self._announced = True
            return ConnectionLost(event.message or "The server is going away.")
        return event

    def _may_retry_open(self, exc: HubbubError, takeover_refusals: int) -> bool:
        """Whether a refused reconnect is worth another attempt (see the class docstring)."""
        if exc.kind is ErrorKind.UNAUTHENTICATED:
            return False  # `_open` already logged in again if it could
        if exc.kind is ErrorKind.ALREADY_EXISTS:
            if exc.retry is not None:
                return exc.retry
            return bool(self.resume_token) and takeover_refusals < MAX_TAKEOVER_REFUSALS
        if exc.kind in (ErrorKind.ABORTED, ErrorKind.PERMISSION_DENIED, ErrorKind.INVALID_ARGUMENT):
            return False
        return exc.retryable

    async def _reconnect(self) -> Welcome:
        takeover_refusals = 0
        while True:
            delay = max(self.backoff.next_delay(), self._away_delay)
            self._away_delay = 0.0
            await asyncio.sleep(delay)
            await self.client.reset_channel()
            try:
                chat = await self._open()
            except HubbubError as exc:
                if not self._may_retry_open(exc, takeover_refusals):
                    self._closing = True
                    raise
                if exc.kind is ErrorKind.ALREADY_EXISTS:
                    takeover_refusals += 1
                if exc.retry_delay is not None:
                    self._away_delay = exc.retry_delay
                continue
            break
        self._adopt(chat, self.last_shown)
        for cid, item in self.pending.items():
            chat.send(
                item.recipient,
                item.body,
                cid,
                group=item.group,
                random_recipient=item.random_recipient,
            )
        assert chat.welcome is not None
        return chat.welcome

    async def _open_chat(self) -> Chat:
        if self.resume_token:
            return await self.client.open_chat(resume_token=self.resume_token)
        return await self.client.open_chat()

    async def _open(self) -> Chat:
        try:
            return await self._open_chat()
        except HubbubError as exc:
            if exc.kind is not ErrorKind.UNAUTHENTICATED or self.password is None:
                raise
            username = self.client.username
            if username is None:
                raise
        await self.client.login(username, self.password)
        return await self._open_chat()
