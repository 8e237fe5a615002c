"""Unit tests of the client library without a network: protobuf→dataclass conversion,
error details, and the reconnect/resume/resend logic of Conversation against fakes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from hubbub.client import (
    Chat,
    Client,
    ConnectionLost,
    Conversation,
    DeliveryReceipt,
    ErrorKind,
    EventRejected,
    FieldViolation,
    GoingAway,
    GroupInfo,
    GroupUpdate,
    HubbubError,
    IncomingMessage,
    Reconnected,
    SendConfirmed,
    UserInfo,
    Welcome,
)
from hubbub.client.errors import _error_from_rpc, _violations_from_metadata
from hubbub.client.events import event_from_pb
from hubbub.client.interactive import rejection_line
from hubbub.client.render import Backoff
from hubbub.v1 import messenger_pb2 as pb

pytestmark = pytest.mark.timeout(10)

T0 = datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC)


# --- conversion -----------------------------------------------------------------------------


def test_message_event_becomes_a_dataclass_with_utc_time() -> None:
    """A protobuf Message turns into IncomingMessage with an aware UTC send_time."""
    resp = pb.ChatResponse(
        message=pb.Message(
            sequence=7,
            message_id=99,
            sender="alice",
            sender_display_name="Alice",
            recipient="bob",
            body="hi",
            client_id="c1",
        )
    )
    resp.message.send_time.FromDatetime(T0)
    event = event_from_pb(resp)
    assert event == IncomingMessage(7, 99, "alice", "Alice", "bob", "hi", T0, "c1")
    assert isinstance(event, IncomingMessage) and event.send_time.tzinfo is not None


def test_welcome_event_lists_online_users() -> None:
    """Welcome carries my user, the online users with presence, and both cursors."""
    resp = pb.ChatResponse(
        welcome=pb.Welcome(
            user=pb.User(username="bob", presence=pb.PRESENCE_ONLINE),
            online_users=[
                pb.User(username="bob", presence=pb.PRESENCE_ONLINE),
                pb.User(username="echobot", presence=pb.PRESENCE_ONLINE, bot=True),
            ],
            acked_sequence=3,
            last_sequence=5,
        )
    )
    event = event_from_pb(resp)
    assert isinstance(event, Welcome)
    assert event.acked_sequence == 3 and event.last_sequence == 5
    assert [u.username for u in event.online_users] == ["bob", "echobot"]
    assert event.online_users[1] == UserInfo("echobot", "", True, True, None)


def test_error_event_keeps_reason_and_field_violations() -> None:
    """An Error event keeps client id, code, reason and the bad fields."""
    resp = pb.ChatResponse(
        error=pb.Error(
            request_index=2,
            client_id="c9",
            code=3,
            reason="INVALID_ARGUMENT",
            message="body too long",
            field_violations=[pb.FieldViolation(field="send.body", description="too long")],
        )
    )
    event = event_from_pb(resp)
    assert isinstance(event, EventRejected)
    assert event.fields() == {"send.body"}
    assert event.client_id == "c9" and event.code == 3


def test_delivery_receipt_and_group_update_are_inbox_entries() -> None:
    """Receipts and group updates convert with their inbox sequence (so they can be acked)."""
    receipt = pb.ChatResponse(
        delivery_receipt=pb.DeliveryReceipt(sequence=4, message_id=9, client_id="c", recipient="b")
    )
    event = event_from_pb(receipt)
    assert isinstance(event, DeliveryReceipt) and event.sequence == 4 and event.recipient == "b"
    update = pb.ChatResponse(
        group_update=pb.GroupUpdate(
            sequence=5,
            group="team",
            action=pb.GROUP_ACTION_CREATED,
            actor="alice",
            members=["alice", "bob"],
        )
    )
    event = event_from_pb(update)
    assert isinstance(event, GroupUpdate)
    assert (event.sequence, event.action, event.members) == (5, "created", ("alice", "bob"))


def test_empty_response_is_ignored() -> None:
    """A ChatResponse with no event set converts to None (skipped, never shown)."""
    assert event_from_pb(pb.ChatResponse()) is None


def test_bad_request_details_are_read_from_trailing_metadata() -> None:
    """google.rpc.BadRequest details in grpc-status-details-bin become FieldViolations."""
    bad = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field="username", description="bad char")
        ]
    )
    detail = any_pb2.Any()
    detail.Pack(bad)
    status = status_pb2.Status(code=3, message="invalid", details=[detail])
    metadata = (("grpc-status-details-bin", status.SerializeToString()),)
    assert _violations_from_metadata(metadata) == [FieldViolation("username", "bad char")]


class _FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[()]:
        return ()


def test_rpc_errors_map_to_kinds_with_human_sentences() -> None:
    """Status codes become ErrorKinds; UNAVAILABLE says which server cannot be reached."""
    err = _error_from_rpc(_FakeRpcError(grpc.StatusCode.ALREADY_EXISTS, "taken"), "h:1")
    assert err.kind is ErrorKind.ALREADY_EXISTS and err.message == "taken"
    err = _error_from_rpc(_FakeRpcError(grpc.StatusCode.UNAVAILABLE, "conn refused"), "h:1")
    assert err.kind is ErrorKind.UNAVAILABLE
    assert err.message == "Cannot reach the Hubbub server at h:1."


def test_rejection_lines() -> None:
    """Unknown recipient, bad body and anything else map to the three fixed lines."""

    def rejected(reason: str, code: int, fields: Iterable[str] = ()) -> EventRejected:
        return EventRejected(
            1, "c", code, reason, "m", tuple(FieldViolation(f, "") for f in fields)
        )

    assert rejection_line(rejected("USER_NOT_FOUND", 5)) == "The destination user does not exist"
    assert rejection_line(rejected("INVALID_ARGUMENT", 3, ["send.body"])) == (
        "Error: Unknown issue in previous message body."
    )
    assert rejection_line(rejected("INVALID_ARGUMENT", 3, ["send.recipient"])) == (
        "Error: Unknown issue in previous message header."
    )
    assert rejection_line(rejected("WHATEVER", 9)) == (
        "Error: Unknown issue in previous message header."
    )


# --- Conversation against fakes -----------------------------------------------------------


def _welcome(acked: int = 0, last: int | None = None) -> Welcome:
    me = UserInfo("bob", online=True)
    return Welcome(me, (me,), acked, acked if last is None else last)


def _msg(seq: int, body: str = "") -> IncomingMessage:
    return IncomingMessage(seq, 100 + seq, "alice", "", "bob", body or f"m{seq}", T0)


class FakeChat:
    """Stands in for Chat: records what the client wrote, plays scripted events."""

    def __init__(self, welcome: Welcome) -> None:
        self.welcome = welcome
        self.written: list[tuple[Any, ...]] = []
        self.events: asyncio.Queue[Any] = asyncio.Queue()
        self.ended = False
        self.half_closed = False

    def play(self, *events: Any) -> None:
        for event in events:
            self.events.put_nowait(event)

    def resume(self, after_sequence: int | None = None) -> None:
        self.written.append(("resume", after_sequence))

    def send(
        self,
        recipient: str,
        body: str,
        client_id: str | None = None,
        *,
        group: str = "",
        random_recipient: bool = False,
    ) -> str:
        where = "?random" if random_recipient else recipient or "#" + group
        self.written.append(("send", client_id, where, body))
        return client_id or "x"

    def ack(self, sequence: int) -> None:
        self.written.append(("ack", sequence))

    def close_writing(self) -> None:
        self.half_closed = True

    async def aclose(self, grace: float = 2.0) -> None:
        self.half_closed = True

    async def __anext__(self) -> Any:
        item = await self.events.get()
        if item is StopAsyncIteration:
            self.ended = True
            raise StopAsyncIteration
        if isinstance(item, HubbubError):
            self.ended = True
            raise item
        return item


class FakeClient:
    """Stands in for Client: hands out scripted chats or refusals."""

    def __init__(self, *opens: FakeChat | HubbubError) -> None:
        self.opens = list(opens)
        self.username = "bob"
        self.logins: list[tuple[str, str]] = []
        self.resets = 0

    async def open_chat(self) -> FakeChat:
        item = self.opens.pop(0)
        if isinstance(item, HubbubError):
            raise item
        return item

    async def reset_channel(self) -> None:
        self.resets += 1

    async def login(self, username: str, password: str) -> None:
        self.logins.append((username, password))


def _fast() -> Backoff:
    return Backoff(base=0.001, cap=0.01)


def _conversation(client: FakeClient, password: str | None = None) -> Conversation:
    return Conversation(client, password=password, backoff=_fast())  # type: ignore[arg-type]


LOST = HubbubError(ErrorKind.UNAVAILABLE, "Cannot reach the Hubbub server at h:1.")


async def test_fresh_start_resumes_from_the_server_cursor() -> None:
    """The first stream sends Resume with no position and treats the acked cursor as shown."""
    chat = FakeChat(_welcome(acked=4))
    conv = _conversation(FakeClient(chat))
    await conv.start()
    assert chat.written == [("resume", None)]
    assert conv.last_shown == 4


async def test_messages_at_or_below_last_shown_are_never_yielded() -> None:
    """A replayed sequence already shown is dropped; the next new one comes through."""
    chat = FakeChat(_welcome(acked=2))
    conv = _conversation(FakeClient(chat))
    await conv.start()
    chat.play(_msg(1), _msg(2), _msg(3))
    event = await anext(conv)
    assert event == _msg(3)


async def test_replayed_receipts_are_filtered_like_messages() -> None:
    """A delivery receipt at or below the last handled sequence is not yielded again."""
    chat = FakeChat(_welcome(acked=1))
    conv = _conversation(FakeClient(chat))
    await conv.start()
    old = DeliveryReceipt(1, 5, "c", "alice", T0)
    new = DeliveryReceipt(2, 6, "d", "alice", T0)
    chat.play(old, new)
    assert await anext(conv) == new


async def test_reconnect_resumes_after_last_shown_and_resends_unconfirmed() -> None:
    """After a drop: one ConnectionLost, then Resume(last shown), the same client ids again
    in the same order, Reconnected, and no message shown twice."""
    first, second = FakeChat(_welcome(0)), FakeChat(_welcome(0, last=1))
    client = FakeClient(first, second)
    conv = _conversation(client)
    await conv.start()
    cid_a = conv.send("alice", "one")
    cid_b = conv.send("", "two", group="team")
    first.play(_msg(1), SendConfirmed(cid_a, 1, 1, T0, False, True), LOST)

    assert await anext(conv) == _msg(1)
    conv.ack(1)
    assert isinstance(await anext(conv), SendConfirmed)
    assert isinstance(await anext(conv), ConnectionLost)
    reconnected = await anext(conv)
    assert isinstance(reconnected, Reconnected)
    assert client.resets == 1
    assert second.written == [("resume", 1), ("ack", 1), ("send", cid_b, "#team", "two")]

    second.play(_msg(1), SendConfirmed(cid_a, 1, 1, T0, True, True), _msg(2))
    assert await anext(conv) == _msg(2)


async def test_resend_result_is_shown_once() -> None:
    """A send confirmed on the old stream and again (duplicate) on the new one counts once."""
    first, second = FakeChat(_welcome()), FakeChat(_welcome())
    conv = _conversation(FakeClient(first, second))
    await conv.start()
    cid = conv.send("alice", "x")
    first.play(LOST)
    assert isinstance(await anext(conv), ConnectionLost)
    assert isinstance(await anext(conv), Reconnected)
    second.play(SendConfirmed(cid, 1, 1, T0, True, True), SendConfirmed(cid, 1, 1, T0, True, True))
    second.play(_msg(1))
    assert isinstance(await anext(conv), SendConfirmed)
    assert await anext(conv) == _msg(1)


async def test_connection_lost_is_announced_once_over_several_failed_attempts() -> None:
    """While the server stays down, reconnect attempts repeat silently until one succeeds."""
    first, last = FakeChat(_welcome()), FakeChat(_welcome())
    client = FakeClient(first, LOST, LOST, LOST, last)
    conv = _conversation(client)
    await conv.start()
    first.play(LOST)
    assert isinstance(await anext(conv), ConnectionLost)
    assert isinstance(await anext(conv), Reconnected)
    assert client.resets == 4


async def test_refused_token_logs_in_again_with_the_password() -> None:
    """If the server no longer knows the token, the conversation logs in again and goes on."""
    first, second = FakeChat(_welcome()), FakeChat(_welcome())
    refused = HubbubError(ErrorKind.UNAUTHENTICATED, "unknown token")
    client = FakeClient(first, refused, second)
    conv = _conversation(client, password="pw-12345678")
    await conv.start()
    first.play(LOST)
    assert isinstance(await anext(conv), ConnectionLost)
    assert isinstance(await anext(conv), Reconnected)
    assert client.logins == [("bob", "pw-12345678")]


async def test_refused_token_without_password_is_fatal() -> None:
    """Without a password to log in again, a refused token ends the conversation."""
    first = FakeChat(_welcome())
    client = FakeClient(first, HubbubError(ErrorKind.UNAUTHENTICATED, "unknown token"))
    conv = _conversation(client)
    await conv.start()
    first.play(LOST)
    assert isinstance(await anext(conv), ConnectionLost)
    with pytest.raises(HubbubError) as info:
        await anext(conv)
    assert info.value.kind is ErrorKind.UNAUTHENTICATED


async def test_going_away_is_announced_once_and_delays_the_reconnect() -> None:
    """GoingAway yields ConnectionLost, half-closes, and the reconnect waits the asked delay."""
    first, second = FakeChat(_welcome()), FakeChat(_welcome())
    conv = _conversation(FakeClient(first, second))
    await conv.start()
    first.play(GoingAway("SERVER_SHUTDOWN", "bye", 300), StopAsyncIteration)
    assert isinstance(await anext(conv), ConnectionLost)
    assert first.half_closed
    started = time.monotonic()
    assert isinstance(await anext(conv), Reconnected)
    assert time.monotonic() - started >= 0.29


async def test_close_ends_iteration() -> None:
    """After close(), iteration stops instead of reconnecting."""
    chat = FakeChat(_welcome())
    conv = _conversation(FakeClient(chat))
    await conv.start()
    await conv.close()
    chat.play(StopAsyncIteration)
    with pytest.raises(StopAsyncIteration):
        await anext(conv)


async def test_streams_that_drop_at_once_do_not_reset_the_backoff() -> None:
    """A server that accepts every stream and drops it at once gets ever longer waits;
    only a stream that stayed up `stable_after` seconds starts the backoff over."""
    chats = [FakeChat(_welcome()) for _ in range(4)]
    conv = Conversation(
        FakeClient(*chats),  # type: ignore[arg-type]
        backoff=Backoff(base=0.001, cap=0.05),
        stable_after=60.0,
    )
    await conv.start()
    for chat in chats[:3]:
        chat.play(LOST)
    assert isinstance(await anext(conv), ConnectionLost)
    for _ in range(2):
        assert isinstance(await anext(conv), Reconnected)
        assert isinstance(await anext(conv), ConnectionLost)
    assert isinstance(await anext(conv), Reconnected)
    assert conv.backoff.attempt == 3
    conv.stable_after = 0.0
    chats[3].play(LOST)
    assert isinstance(await anext(conv), ConnectionLost)
    assert conv.backoff.attempt == 0


async def test_random_send_is_resent_as_random_after_a_reconnect() -> None:
    """`send_random` stays a random send when it is re-sent on a new stream (same client id)."""
    first, second = FakeChat(_welcome()), FakeChat(_welcome())
    conv = _conversation(FakeClient(first, second))
    await conv.start()
    cid = conv.send_random("anyone?")
    assert first.written[-1] == ("send", cid, "?random", "anyone?")
    first.play(LOST)
    assert isinstance(await anext(conv), ConnectionLost)
    assert isinstance(await anext(conv), Reconnected)
    assert second.written[-1] == ("send", cid, "?random", "anyone?")


# --- groups, history, profiles: Client calls against a fake stub --------------------------


class _RpcErrorWithDetails(_FakeRpcError):
    def __init__(self, code: grpc.StatusCode, details: str, reason: str) -> None:
        super().__init__(code, details)
        info = any_pb2.Any()
        info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain="hubbub"))
        status = status_pb2.Status(code=code.value[0], message=details, details=[info])
        self._metadata = (("grpc-status-details-bin", status.SerializeToString()),)

    def trailing_metadata(self) -> Any:  # type: ignore[override]
        return self._metadata


def _history(n: int) -> list[pb.Message]:
    """Messages m1..mn of one conversation, NEWEST first (as ListHistory serves them)."""
    out = []
    for i in range(n, 0, -1):
        m = pb.Message(message_id=i, sender="alice", recipient="bob", body=f"m{i}")
        m.send_time.FromDatetime(T0)
        out.append(m)
    return out


class FakeStub:
    """Stands in for the generated stub: records requests, serves canned answers."""

    def __init__(self, history: list[pb.Message] | None = None) -> None:
        self.requests: list[tuple[str, Any, Any]] = []
        self.history = history or []
        self.fail: grpc.RpcError | None = None

    def _record(self, name: str, request: Any, metadata: Any) -> None:
        self.requests.append((name, request, metadata))
        if self.fail is not None:
            raise self.fail

    async def ListHistory(self, request: Any, *, metadata: Any, **_: Any) -> Any:
        self._record("ListHistory", request, metadata)
        start = int(request.page_token or 0)
        size = request.page_size or 50
        page = self.history[start : start + size]
        more = start + size < len(self.history)
        return pb.ListHistoryResponse(
            messages=page, next_page_token=str(start + size) if more else ""
        )

    async def CreateGroup(self, request: Any, *, metadata: Any, **_: Any) -> Any:
        self._record("CreateGroup", request, metadata)
        group = pb.Group(name=request.name.lstrip("#").lower(), members=["alice", "bob"])
        group.create_time.FromDatetime(T0)
        return pb.CreateGroupResponse(group=group)

    async def ListGroups(self, request: Any, *, metadata: Any, **_: Any) -> Any:
        self._record("ListGroups", request, metadata)
        return pb.ListGroupsResponse(groups=[pb.Group(name="team", members=["alice", "bob"])])

    async def LeaveGroup(self, request: Any, *, metadata: Any, **_: Any) -> Any:
        self._record("LeaveGroup", request, metadata)
        return pb.LeaveGroupResponse()

    async def UpdateProfile(self, request: Any, *, metadata: Any, **_: Any) -> Any:
        self._record("UpdateProfile", request, metadata)
        return pb.UpdateProfileResponse(
            user=pb.User(username="alice", display_name=request.display_name or "alice")
        )


async def _client(stub: FakeStub) -> Client:
    client = Client("127.0.0.1:9", token="tok")
    client._stub = stub  # type: ignore[assignment]
    return client


async def test_list_history_converts_a_page_and_its_token() -> None:
    """A ListHistory page becomes HistoryPage(IncomingMessage…, next_page_token) and the
    request names the conversation, the page size and the bearer token."""
    stub = FakeStub(_history(3))
    client = await _client(stub)
    page = await client.list_history(username="alice", page_size=2)
    assert [m.body for m in page.messages] == ["m3", "m2"]
    assert page.next_page_token == "2"
    assert page.messages[0] == IncomingMessage(0, 3, "alice", "", "bob", "m3", T0)
    name, request, metadata = stub.requests[0]
    assert (name, request.WhichOneof("conversation"), request.username) == (
        "ListHistory",
        "username",
        "alice",
    )
    assert request.page_size == 2 and metadata == (("authorization", "Bearer tok"),)
    group_page = await client.list_history(group="team", page_token="2")
    assert stub.requests[1][1].group == "team" and stub.requests[1][1].page_token == "2"
    assert [m.body for m in group_page.messages] == ["m1"] and group_page.next_page_token == ""
    await client.close()


async def test_list_history_needs_exactly_one_conversation() -> None:
    """Neither or both of username and group is a programming error (ValueError), not a call."""
    stub = FakeStub()
    client = await _client(stub)
    with pytest.raises(ValueError):
        await client.list_history()
    with pytest.raises(ValueError):
        await client.list_history(username="a", group="b")
    assert stub.requests == []
    await client.close()


async def test_recent_history_pages_back_and_returns_oldest_first() -> None:
    """`recent_history(count=N)` fetches newest-first pages (at most 500 each) until it has
    N messages and returns the newest N, oldest first."""
    stub = FakeStub(_history(700))
    client = await _client(stub)
    messages = await client.recent_history(username="alice", count=600)
    assert [r.page_size for _, r, _ in stub.requests] == [500, 100]
    assert len(messages) == 600
    assert messages[0].body == "m101" and messages[-1].body == "m700"
    await client.close()


async def test_recent_history_stops_at_the_oldest_message() -> None:
    """A conversation shorter than the count is returned whole, oldest first, in one call."""
    stub = FakeStub(_history(3))
    client = await _client(stub)
    assert [m.body for m in await client.recent_history(group="team", count=20)] == [
        "m1",
        "m2",
        "m3",
    ]
    assert len(stub.requests) == 1
    await client.close()


async def test_group_calls_return_group_info() -> None:
    """create_group/list_groups return GroupInfo (name, sorted members, aware create time);
    leave_group sends the name as given."""
    stub = FakeStub()
    client = await _client(stub)
    group = await client.create_group("#Team", ["bob"])
    assert group == GroupInfo("team", ("alice", "bob"), T0)
    assert list(stub.requests[0][1].members) == ["bob"]
    assert await client.list_groups() == [GroupInfo("team", ("alice", "bob"), None)]
    await client.leave_group("team")
    assert stub.requests[-1][0] == "LeaveGroup" and stub.requests[-1][1].group == "team"
    await client.close()


async def test_update_profile_sends_only_what_changes() -> None:
    """display_name=None leaves the optional field unset (the name is kept); a password
    change carries the new and the current password."""
    stub = FakeStub()
    client = await _client(stub)
    await client.update_profile(new_password="new-secret-1", current_password="old-secret")
    request = stub.requests[0][1]
    assert not request.HasField("display_name")
    assert (request.new_password, request.current_password) == ("new-secret-1", "old-secret")
    user = await client.update_profile(display_name="Alice Liddell")
    assert stub.requests[1][1].HasField("display_name")
    assert user.display_name == "Alice Liddell"
    await client.close()


async def test_refusals_carry_the_server_reason() -> None:
    """A refused call raises HubbubError with the kind, the server's sentence and the
    ErrorInfo reason (e.g. GROUP_NOT_FOUND), so callers can tell a missing group from a
    missing user."""
    stub = FakeStub()
    stub.fail = _RpcErrorWithDetails(
        grpc.StatusCode.NOT_FOUND, "The group '#nope' does not exist.", "GROUP_NOT_FOUND"
    )
    client = await _client(stub)
    with pytest.raises(HubbubError) as info:
        await client.leave_group("nope")
    assert info.value.kind is ErrorKind.NOT_FOUND
    assert info.value.reason == "GROUP_NOT_FOUND"
    assert info.value.detail() == "The group '#nope' does not exist."
    await client.close()


def test_detail_prefers_field_violations() -> None:
    """HubbubError.detail() joins the field problems, or falls back to the message."""
    err = HubbubError(
        ErrorKind.INVALID_ARGUMENT,
        "bad request",
        [FieldViolation("name", "too short"), FieldViolation("members", "too many")],
    )
    assert err.detail() == "too short; too many"
    assert HubbubError(ErrorKind.OTHER, "plain").detail() == "plain"


def test_send_result_names_the_recipient() -> None:
    """SendConfirmed.recipient is SendResult.recipient (the user a random send went to)."""
    resp = pb.ChatResponse(send_result=pb.SendResult(client_id="c", message_id=1, recipient="bob"))
    event = event_from_pb(resp)
    assert isinstance(event, SendConfirmed) and event.recipient == "bob"


class _IdleCall:
    """A Chat call that never answers until cancelled."""

    def __init__(self) -> None:
        self.cancelled = asyncio.Event()

    async def read(self) -> object:
        await self.cancelled.wait()
        return object()  # not a ChatResponse: the stream ended

    def cancel(self) -> None:
        self.cancelled.set()


async def test_chat_send_sets_exactly_one_destination() -> None:
    """Chat.send fills the destination oneof: recipient, group, or random_recipient."""
    outbox: asyncio.Queue[pb.ChatRequest | None] = asyncio.Queue()
    chat = Chat(_IdleCall(), outbox, "h:1")
    chat.send("bob", "a", "c1")
    chat.send("", "b", "c2", group="team")
    chat.send("", "c", "c3", random_recipient=True)
    sent = [outbox.get_nowait() for _ in range(3)]
    assert [r.send.WhichOneof("destination") for r in sent if r is not None] == [
        "recipient",
        "group",
        "random_recipient",
    ]
    assert sent[2] is not None and sent[2].send.random_recipient is True
    chat.cancel()
    await chat.wait_closed(1.0)
