"""Transport: convert between hubbub.v1 protobuf messages and the hub's plain records."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from hubbub.v1 import messenger_pb2 as pb

from .errors import MalformedEvent
from .events import (
    InAck,
    InEvent,
    InMalformed,
    InPing,
    InResume,
    InSend,
    OutError,
    OutEvent,
    OutGoingAway,
    OutMessage,
    OutPong,
    OutPresence,
    OutSendResult,
    OutSynced,
    OutWelcome,
)
from .grpc_errors import STATUS_OF
from .models import (
    EntryKind,
    Group,
    GroupAction,
    SendReceipt,
    StoredMessage,
    UserView,
    to_ms,
)
from .presence_feed import OnlineUsers


def timestamp(when: datetime) -> Timestamp:
    """A protobuf Timestamp for an aware datetime (millisecond resolution, as stored)."""
    ms = to_ms(when)
    return Timestamp(seconds=ms // 1000, nanos=ms % 1000 * 1_000_000)


def user(view: UserView) -> pb.User:
    """hubbub.v1.User for a :class:`UserView`."""
    msg = pb.User(
        username=view.username,
        display_name=view.display_name,
        presence=pb.PRESENCE_ONLINE if view.online else pb.PRESENCE_OFFLINE,
        bot=view.bot,
    )
    if view.presence_changed_at is not None:
        msg.presence_change_time.CopyFrom(timestamp(view.presence_changed_at))
    return msg


# Encoded forms of what one node sends to many streams, built once per object instead of
# once per stream: a Welcome lists every online user, and every presence change goes to
# every stream. Keyed by username, holding the object they were built from (checked by
# identity, so a new view or change of the user is encoded afresh). Process-wide and
# bounded; the cached messages are shared and must not be modified.
WIRE_CACHE_MAX = 100_000  # entries per cache before it is emptied
_online_wire: dict[str, tuple[UserView, bytes]] = {}
_chunk_wire: dict[int, tuple[tuple[UserView, ...], bytes]] = {}  # id(chunk) → (chunk, bytes)
_presence_wire: dict[str, tuple[OutPresence, pb.ChatResponse]] = {}


def _online_entry(view: UserView) -> bytes:
    """``view`` encoded as one ``Welcome.online_users`` entry (field tag, length, User)."""
    hit = _online_wire.get(view.username)
    if hit is not None and hit[0] is view:
        return hit[1]
    wire = pb.Welcome(online_users=[user(view)]).SerializeToString()
    if len(_online_wire) >= WIRE_CACHE_MAX:
        _online_wire.clear()
    _online_wire[view.username] = (view, wire)
    return wire


def _online_entries(online: Sequence[UserView]) -> bytes:
    """``online`` encoded as ``Welcome.online_users`` entries: from the cached encoding
    of each chunk of an :class:`OnlineUsers` (one chunk changes per connect), else user
    by user."""
    if not isinstance(online, OnlineUsers):
        return b"".join([_online_entry(u) for u in online])
    chunks = online.chunks
    if len(_chunk_wire) > 2 * len(chunks) + 8:  # mostly chunks replaced since
        _chunk_wire.clear()
    parts = []
    for chunk in chunks:
        hit = _chunk_wire.get(id(chunk))
        if hit is None or hit[0] is not chunk:
            hit = _chunk_wire[id(chunk)] = (chunk, b"".join([_online_entry(u) for u in chunk]))
        parts.append(hit[1])
    return b"".join(parts)


def _presence_change(event: OutPresence) -> pb.ChatResponse:
    """The ChatResponse of a presence change (shared by every stream that writes it)."""
    name = event.change.user.username
    hit = _presence_wire.get(name)
    if hit is not None and hit[0] is event:
        return hit[1]
    response = pb.ChatResponse(presence_change=pb.PresenceChange(user=user(event.change.user)))
    if len(_presence_wire) >= WIRE_CACHE_MAX:
        _presence_wire.clear()
    _presence_wire[name] = (event, response)
    return response


def message(m: StoredMessage) -> pb.Message:
    """hubbub.v1.Message for a stored inbox message."""
    return pb.Message(
        sequence=m.sequence,
        message_id=m.message_id,
        sender=m.sender,
        sender_display_name=m.sender_display_name,
        recipient=m.recipient,
        body=m.body,
        send_time=timestamp(m.sent_at),
        client_id=m.client_id,
        group=m.group,
    )


def group(g: Group) -> pb.Group:
    """hubbub.v1.Group for a :class:`Group`."""
    return pb.Group(name=g.name, members=list(g.members), create_time=timestamp(g.created_at))


_ACTIONS = {
    GroupAction.CREATED: pb.GROUP_ACTION_CREATED,
    GroupAction.MEMBERS_ADDED: pb.GROUP_ACTION_MEMBERS_ADDED,
    GroupAction.MEMBERS_LEFT: pb.GROUP_ACTION_MEMBERS_LEFT,
}


def inbox_entry(m: StoredMessage) -> pb.ChatResponse:
    """The ChatResponse for one inbox entry (message, receipt or group update)."""
    if m.kind is EntryKind.RECEIPT:
        return pb.ChatResponse(
            delivery_receipt=pb.DeliveryReceipt(
                sequence=m.sequence,
                message_id=m.ref_message_id,
                client_id=m.client_id,
                recipient=m.sender,
                delivery_time=timestamp(m.sent_at),
                message_ids=m.ref_message_ids,
                client_ids=m.ref_client_ids,
            )
        )
    if m.kind is EntryKind.GROUP_UPDATE:
        return pb.ChatResponse(
            group_update=pb.GroupUpdate(
                sequence=m.sequence,
                group=m.group,
                action=_ACTIONS[m.action] if m.action else pb.GROUP_ACTION_UNSPECIFIED,
                actor=m.sender,
                members=list(m.members),
                update_time=timestamp(m.sent_at),
            )
        )
    return pb.ChatResponse(message=message(m))


def client_events(request: pb.ChatRequest) -> list[InEvent]:
    """Decode one ChatRequest frame into its events, in order: a ``batch`` gives one
    event per inner request (a batch inside it becomes :class:`InMalformed`, field
    ``batch.events``), anything else one event (see :func:`client_event`)."""
    if request.WhichOneof("event") != "batch":
        return [client_event(request)]
    return [client_event(inner) for inner in request.batch.events]


def _nested_batch() -> InMalformed:
    return InMalformed(
        MalformedEvent.for_field("batch.events", "a batch cannot contain another batch")
    )


def client_event(request: pb.ChatRequest) -> InEvent:
    """Decode one ChatRequest that is not a batch; an empty one becomes
    :class:`InMalformed`."""
    kind = request.WhichOneof("event")
    if kind == "send":
        return send_event(request.send)
    if kind == "ack":
        return InAck(request.ack.sequence)
    if kind == "resume":
        r = request.resume
        return InResume(
            r.after_sequence if r.HasField("after_sequence") else None, r.history_id, r.batching
        )
    if kind == "ping":
        return InPing(request.ping.nonce)
    if kind == "batch":  # reached for a batch inside a batch (see client_events)
        return _nested_batch()
    return InMalformed(
        MalformedEvent.for_field("event", "the event is empty: set resume, send, ack or ping")
    )


def send_event(s: pb.SendMessage | pb.SendMessageRequest) -> InSend | InMalformed:
    """Decode a Chat ``send`` event or a unary SendMessageRequest (the same fields);
    no destination set becomes :class:`InMalformed`."""
    if s.WhichOneof("destination") is None:
        return InMalformed(
            MalformedEvent.for_field("send.recipient", "set recipient, group or random_recipient")
        )
    return InSend(
        client_id=s.client_id,
        recipient=s.recipient,
        body=s.body,
        group=s.group,
        random_recipient=s.random_recipient,
    )


def send_result(r: SendReceipt) -> pb.SendResult:
    """Encode a stored send's receipt (Chat ``send_result`` and SendMessageResponse)."""
    return pb.SendResult(
        client_id=r.client_id,
        message_id=r.message_id,
        sequence=r.sequence,
        send_time=timestamp(r.sent_at),
        duplicate=r.duplicate,
        recipient_online=r.recipient_online,
        recipient=r.recipient,
    )


def server_event(event: OutEvent) -> pb.ChatResponse:
    """Encode one hub event as a ChatResponse."""
    match event:
        case OutMessage():
            return inbox_entry(event.message)
        case OutSendResult():
            return pb.ChatResponse(send_result=send_result(event.receipt))
        case OutPresence():
            return _presence_change(event)
        case OutWelcome():
            welcome = pb.Welcome(
                user=user(event.user),
                acked_sequence=event.cursor.acked_sequence,
                last_sequence=event.cursor.last_sequence,
                history_id=event.history_id,
                resume_token=event.resume_token,
            )
            if event.session_expires_at is not None:
                welcome.session_expire_time.CopyFrom(timestamp(event.session_expires_at))
            # repeated entries appended in order: the cached encodings, parsed in C
            welcome.MergeFromString(_online_entries(event.online))
            return pb.ChatResponse(welcome=welcome)
        case OutError():
            err = event.error
            return pb.ChatResponse(
                error=pb.Error(
                    request_index=event.request_index,
                    client_id=event.client_id,
                    code=STATUS_OF[err.category].value[0],
                    reason=err.reason,
                    message=err.message,
                    field_violations=[
                        pb.FieldViolation(field=v.field, description=v.description)
                        for v in err.violations
                    ],
                    retry=err.retry,
                )
            )
        case OutGoingAway():
            return pb.ChatResponse(
                going_away=pb.GoingAway(
                    reason=event.reason,
                    message=event.message,
                    reconnect_delay_ms=event.reconnect_delay_ms,
                )
            )
        case OutPong():
            return pb.ChatResponse(pong=pb.Pong(nonce=event.nonce))
        case OutSynced():
            return pb.ChatResponse(synced=pb.Synced(last_sequence=event.last_sequence))


MAX_BATCH_BYTES = 1 << 20  # most serialized bytes of the events in one batch frame (1 MiB)


def server_frames(
    events: Sequence[OutEvent], max_bytes: int = MAX_BATCH_BYTES
) -> list[pb.ChatResponse]:
    """Encode queued hub events, in order, as few ChatResponse frames as fit: runs of
    events whose serialized sizes add up to at most ``max_bytes`` (bytes) become one
    ``batch`` frame each; an event alone (or too big to share) is written as itself.

    Only for a stream that negotiated batching (Resume.batching); one event gives one
    frame, exactly as :func:`server_event`.
    """
    if len(events) == 1:
        return [server_event(events[0])]
    frames: list[pb.ChatResponse] = []
    run: list[pb.ChatResponse] = []
    size = 0
    for event in events:
        response = server_event(event)
        length = response.ByteSize()
        if run and size + length > max_bytes:
            frames.append(_frame(run))
            run, size = [], 0
        run.append(response)
        size += length
    frames.append(_frame(run))
    return frames


def _frame(run: list[pb.ChatResponse]) -> pb.ChatResponse:
    if len(run) == 1:
        return run[0]
    return pb.ChatResponse(batch=pb.ChatResponseBatch(events=run))
