"""Unit tests of the client library's edges (issue 9 items 3-5) against scripted fakes:
resync after a restore (history id, position beyond the end, HISTORY_CHANGED /
RESUME_BEYOND_END), the resume token on reconnect, failover between addresses, the
retry flag, ListUsers paging and the unary SendMessage."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from hubbub.client import (
    Client,
    ConnectionLost,
    Conversation,
    ErrorKind,
    EventRejected,
    FieldViolation,
    HubbubError,
    IncomingMessage,
    Reconnected,
    SendConfirmed,
    UserInfo,
    Welcome,
)
from hubbub.client.backoff import Backoff
from hubbub.client.conversation import MAX_TAKEOVER_REFUSALS
from hubbub.client.errors import _error_from_rpc, kind_of_code
from hubbub.client.events import event_from_pb
from hubbub.v1 import messenger_pb2 as pb

pytestmark = pytest.mark.timeout(10)

T0 = datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC)
ME = UserInfo("bob", online=True)


def welcome(acked: int, last: int, history: str = "h1", token: str = "") -> Welcome:
    """A Welcome with both cursors, a history id and a resume token."""
    return Welcome(ME, (ME,), acked, last, history_id=history, resume_token=token)


def msg(seq: int) -> IncomingMessage:
    """Inbox message number `seq`."""
    return IncomingMessage(seq, 100 + seq, "alice", "", "bob", f"m{seq}", T0)


class FakeChat:
    """Stands in for Chat: records what the client wrote, plays scripted events."""

    def __init__(self, welcome: Welcome) -> None:
        self.welcome = welcome
        self.written: list[tuple[Any, ...]] = []
        self.events: asyncio.Queue[Any] = asyncio.Queue()
        self.ended = False

    def play(self, *events: Any) -> None:
        for event in events:
            self.events.put_nowait(event)

    def resume(self, after_sequence: int | None = None, history_id: str = "") -> None:
        self.written.append(("resume", after_sequence, history_id))

    def send(self, recipient: str, body: str, client_id: str | None = None, **_: Any) -> str:
        self.written.append(("send", client_id, recipient, body))
        return client_id or "x"

    def ack(self, sequence: int) -> None:
        self.written.append(("ack", sequence))

    def close_writing(self) -> None:
        pass

    async def aclose(self, grace: float = 2.0) -> None:
        pass

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
    """Stands in for Client: hands out scripted chats or refusals, records tokens."""

    def __init__(self, *opens: FakeChat | HubbubError) -> None:
        self.opens = list(opens)
        self.username = "bob"
        self.resume_tokens: list[str] = []
        self.resets = 0
        self.logins = 0

    async def open_chat(self, within: float = 10.0, *, resume_token: str = "") -> Any:
        self.resume_tokens.append(resume_token)
        if not self.opens:
            raise AssertionError("the conversation tried to reconnect once too often")
        item = self.opens.pop(0)
        if isinstance(item, HubbubError):
            raise item
        return item

    async def reset_channel(self) -> None:
        self.resets += 1

    async def login(self, username: str, password: str) -> None:
        self.logins += 1


def conversation(client: FakeClient, password: str | None = None) -> Conversation:
    """A Conversation with a fast backoff."""
    return Conversation(
        client,  # type: ignore[arg-type]
        password=password,
        backoff=Backoff(base=0.001, cap=0.01),
    )


LOST = HubbubError(ErrorKind.UNAVAILABLE, "Cannot reach the Hubbub server at h:1.")


async def shown_after_lost(conv: Conversation) -> None:
    """Consume ConnectionLost then Reconnected."""
    assert isinstance(await anext(conv), ConnectionLost)
    assert isinstance(await anext(conv), Reconnected)


# --- item 3: a restored server never makes the client skip messages ------------------------


async def test_restored_server_with_lower_last_sequence_resyncs_from_the_acked_position() -> None:
    """Shown 7, server restored at 3 (same or unknown history): the client resumes from the
    server's acked position without an after_sequence, sends no ack of 7, and shows the
    next new messages 4..7 instead of dropping them as already shown."""
    first = FakeChat(welcome(0, 7, history=""))
    second = FakeChat(welcome(3, 3, history=""))
    client = FakeClient(first, second)
    conv = conversation(client)
    await conv.start()
    first.play(*(msg(i) for i in range(1, 8)), LOST)
    for i in range(1, 8):
        assert await anext(conv) == msg(i)
        conv.ack(i)
    await shown_after_lost(conv)
    assert second.written[0] == ("resume", None, "")
    assert ("ack", 7) not in second.written
    second.play(*(msg(i) for i in range(4, 8)))
    assert [await anext(conv) for _ in range(4)] == [msg(i) for i in range(4, 8)]


async def test_a_new_history_id_resyncs_even_if_the_numbers_fit() -> None:
    """A Welcome naming another history (restore or import) drops the old position even
    when its last sequence is higher: everything after the acked sequence is new."""
    first = FakeChat(welcome(0, 5, history="old"))
    second = FakeChat(welcome(2, 9, history="new"))
    conv = conversation(FakeClient(first, second))
    await conv.start()
    first.play(*(msg(i) for i in range(1, 6)), LOST)
    for i in range(1, 6):
        assert await anext(conv) == msg(i)
        conv.ack(i)
    await shown_after_lost(conv)
    assert second.written[0] == ("resume", None, "")
    assert conv.last_shown == 2 and conv.history_id == "new"
    second.play(msg(3))
    assert await anext(conv) == msg(3)


async def test_same_history_resumes_after_the_last_shown_with_its_history_id() -> None:
    """Same history, position within it: Resume(after=last shown, history_id) as before."""
    first = FakeChat(welcome(0, 2, history="h"))
    second = FakeChat(welcome(1, 2, history="h"))
    conv = conversation(FakeClient(first, second))
    await conv.start()
    first.play(msg(1), msg(2), LOST)
    for i in (1, 2):
        assert await anext(conv) == msg(i)
        conv.ack(i)
    await shown_after_lost(conv)
    assert second.written[:2] == [("resume", 2, "h"), ("ack", 2)]


@pytest.mark.parametrize(("code", "reason"), [(9, "HISTORY_CHANGED"), (11, "RESUME_BEYOND_END")])
async def test_resume_refusals_resync_silently(code: int, reason: str) -> None:
    """The documented Error events HISTORY_CHANGED / RESUME_BEYOND_END are not shown (no
    "Error: Unknown issue ..." line); the client forgets its position and shows the
    replay from the acknowledged sequence."""
    first = FakeChat(welcome(0, 6, history="h"))
    second = FakeChat(welcome(3, 6, history="h"))
    conv = conversation(FakeClient(first, second))
    await conv.start()
    first.play(*(msg(i) for i in range(1, 7)), LOST)
    for i in range(1, 7):
        assert await anext(conv) == msg(i)
        conv.ack(i)
    await shown_after_lost(conv)
    bad_ack = (FieldViolation("ack.sequence", "not sent yet"),)
    second.play(
        EventRejected(1, "", code, reason, "position from another history", retry=False),
        EventRejected(2, "", 3, "INVALID_ARGUMENT", "bad ack", bad_ack),
        msg(4),
    )
    assert await anext(conv) == msg(4)
    assert conv.last_shown == 3


async def test_start_with_a_stale_saved_position_resyncs() -> None:
    """A caller's saved position beyond the server's last sequence is not trusted."""
    chat = FakeChat(welcome(1, 2, history="h"))
    conv = conversation(FakeClient(chat))
    await conv.start(after_sequence=10, history_id="h")
    assert chat.written == [("resume", None, "")]
    assert conv.last_shown == 1


# --- item 4: takeover with the resume token, failover, the retry flag ----------------------


async def test_reconnect_sends_the_resume_token_of_the_last_welcome() -> None:
    """The first open carries no token; the reconnect carries the last Welcome's token,
    and the next one the newer stream's token."""
    first = FakeChat(welcome(0, 0, token="tok-1"))
    second = FakeChat(welcome(0, 0, token="tok-2"))
    third = FakeChat(welcome(0, 0, token="tok-3"))
    client = FakeClient(first, second, third)
    conv = conversation(client)
    await conv.start()
    first.play(LOST)
    await shown_after_lost(conv)
    second.play(LOST)
    await shown_after_lost(conv)
    assert client.resume_tokens == ["", "tok-1", "tok-2"]


def _refusal(kind: ErrorKind, retry: bool | None = None, reason: str = "") -> HubbubError:
    return HubbubError(kind, "refused", reason=reason, retry=retry)


@pytest.mark.parametrize(
    "refusal",
    [
        _refusal(ErrorKind.UNAVAILABLE, retry=False),
        _refusal(ErrorKind.RESOURCE_EXHAUSTED, retry=False),
        _refusal(ErrorKind.PERMISSION_DENIED),
        _refusal(ErrorKind.INVALID_ARGUMENT),
        _refusal(ErrorKind.ABORTED, reason="SESSION_TAKEN_OVER"),
        _refusal(ErrorKind.ALREADY_EXISTS),
        _refusal(ErrorKind.UNAUTHENTICATED),
    ],
    ids=lambda e: f"{e.kind.name}-retry={e.retry}",
)
async def test_permanent_refusals_on_reconnect_stop_at_once(refusal: HubbubError) -> None:
    """A reconnect refused with retry=false, or a permanent status without a flag, ends
    the conversation with that error after ONE attempt (never an endless retry)."""
    first = FakeChat(welcome(0, 0))
    client = FakeClient(first, refusal, FakeChat(welcome(0, 0)))
    conv = conversation(client)
    await conv.start()
    first.play(LOST)
    assert isinstance(await anext(conv), ConnectionLost)
    with pytest.raises(HubbubError) as info:
        await anext(conv)
    assert info.value is refusal
    assert len(client.resume_tokens) == 2
    with pytest.raises(StopAsyncIteration):
        await anext(conv)


async def test_already_exists_with_a_resume_token_is_retried_a_bounded_number_of_times() -> None:
    """With a resume token sent, ALREADY_EXISTS (no flag) is retried, but at most
    MAX_TAKEOVER_REFUSALS times in a row; then it is reported."""
    first = FakeChat(welcome(0, 0, token="tok"))
    refused = _refusal(ErrorKind.ALREADY_EXISTS)
    opens: list[Any] = [first] + [refused] * (MAX_TAKEOVER_REFUSALS + 1)
    client = FakeClient(*opens)
    conv = conversation(client)
    await conv.start()
    first.play(LOST)
    assert isinstance(await anext(conv), ConnectionLost)
    with pytest.raises(HubbubError):
        await anext(conv)
    assert len(client.resume_tokens) == 1 + MAX_TAKEOVER_REFUSALS + 1


async def test_retryable_refusals_are_retried_and_retry_info_is_waited() -> None:
    """retry=true (RESOURCE_EXHAUSTED with RetryInfo 0.3 s) is retried after that delay."""
    first, last = FakeChat(welcome(0, 0)), FakeChat(welcome(0, 0))
    busy = HubbubError(ErrorKind.RESOURCE_EXHAUSTED, "full", retry=True, retry_delay=0.3)
    client = FakeClient(first, busy, last)
    conv = conversation(client)
    await conv.start()
    first.play(LOST)
    assert isinstance(await anext(conv), ConnectionLost)
    started = time.monotonic()
    assert isinstance(await anext(conv), Reconnected)
    assert time.monotonic() - started >= 0.29


async def test_stream_taken_over_ends_the_conversation_without_reconnecting() -> None:
    """A live stream ended with ABORTED SESSION_TAKEN_OVER is reported, not reopened."""
    first = FakeChat(welcome(0, 0))
    client = FakeClient(first, FakeChat(welcome(0, 0)))
    conv = conversation(client)
    await conv.start()
    first.play(_refusal(ErrorKind.ABORTED, reason="SESSION_TAKEN_OVER"))
    with pytest.raises(HubbubError) as info:
        await anext(conv)
    assert info.value.kind is ErrorKind.ABORTED
    assert len(client.resume_tokens) == 1


async def test_revoked_stream_without_password_is_reported() -> None:
    """A stream ended with UNAUTHENTICATED (session revoked) and no password to log in
    again is reported at once instead of looping."""
    first = FakeChat(welcome(0, 0))
    client = FakeClient(first)
    conv = conversation(client)
    await conv.start()
    first.play(_refusal(ErrorKind.UNAUTHENTICATED, retry=False))
    with pytest.raises(HubbubError):
        await anext(conv)
    assert client.resume_tokens == [""]


def test_client_fails_over_round_robin() -> None:
    """A Client with several addresses moves to the next one on every reset_channel."""

    async def run() -> list[str]:
        client = Client("127.0.0.1:1,127.0.0.1:2", token="t")
        seen = [client.address]
        for _ in range(3):
            await client.reset_channel()
            seen.append(client.address)
        await client.close()
        return seen

    assert asyncio.run(run()) == ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:1", "127.0.0.1:2"]


async def test_connect_skips_a_dead_address() -> None:
    """Client.connect tries the addresses in turn and keeps the first that answers."""
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        client = await Client.connect(f"127.0.0.1:1,127.0.0.1:{port}", within=1.0)
        assert client.address == f"127.0.0.1:{port}"
        await client.close()
    finally:
        await server.stop(None)


def test_retry_flag_and_delay_are_read_from_the_status_details() -> None:
    """ErrorInfo metadata["retry"] and RetryInfo become HubbubError.retry / retry_delay."""
    info, delay = any_pb2.Any(), any_pb2.Any()
    info.Pack(
        error_details_pb2.ErrorInfo(reason="BUSY", domain="hubbub", metadata={"retry": "true"})
    )
    delay.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(nanos=250_000_000)))
    status = status_pb2.Status(code=8, message="busy", details=[info, delay])

    class Err(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.RESOURCE_EXHAUSTED

        def details(self) -> str:
            return "busy"

        def trailing_metadata(self) -> Any:
            return (("grpc-status-details-bin", status.SerializeToString()),)

    err = _error_from_rpc(Err(), "h:1")
    assert (err.reason, err.retry, err.retry_delay, err.retryable) == ("BUSY", True, 0.25, True)
    assert HubbubError(ErrorKind.UNAVAILABLE, "x", retry=False).retryable is False
    assert HubbubError(ErrorKind.NOT_FOUND, "x").retryable is False


def test_error_events_carry_a_kind_and_the_retry_flag() -> None:
    """Error events expose ErrorKind (not a raw number) and the server's retry flag."""
    event = event_from_pb(
        pb.ChatResponse(error=pb.Error(code=5, reason="USER_NOT_FOUND", retry=False))
    )
    assert isinstance(event, EventRejected)
    assert event.kind is ErrorKind.NOT_FOUND and event.retry is False
    assert kind_of_code(10) is ErrorKind.ABORTED and kind_of_code(999) is ErrorKind.OTHER


def test_welcome_carries_history_id_resume_token_and_expiry() -> None:
    """Welcome.history_id, resume_token and session_expire_time (UTC) are converted."""
    resp = pb.ChatResponse(welcome=pb.Welcome(history_id="h9", resume_token="rt"))
    resp.welcome.session_expire_time.FromDatetime(T0)
    event = event_from_pb(resp)
    assert isinstance(event, Welcome)
    assert (event.history_id, event.resume_token, event.session_expire_time) == ("h9", "rt", T0)


def test_the_library_does_not_import_the_cli_text_module() -> None:
    """The library (hubbub.client and its modules) works without loading hubbub.client.render."""
    code = "import sys, hubbub.client; print('hubbub.client.render' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- ListUsers paging (issue 8 hole 5) and the unary SendMessage (issue 9 item 5) ---------


class PagingStub:
    """A fake stub serving `total` users in pages, and SendMessage."""

    def __init__(self, total: int) -> None:
        self.users = [f"user{i:05d}" for i in range(total)]
        self.requests: list[Any] = []

    async def ListUsers(self, request: Any, **_: Any) -> Any:
        self.requests.append(request)
        start = int(request.page_token or 0)
        size = min(request.page_size or 100, 1000)
        page = self.users[start : start + size]
        token = str(start + size) if start + size < len(self.users) else ""
        return pb.ListUsersResponse(
            users=[pb.User(username=u) for u in page], next_page_token=token
        )

    async def SendMessage(self, request: Any, **_: Any) -> Any:
        self.requests.append(request)
        result = pb.SendResult(
            client_id=request.client_id, message_id=7, sequence=3, recipient="carol"
        )
        result.send_time.FromDatetime(T0)
        return pb.SendMessageResponse(result=result)


async def test_list_users_pages_until_the_last_page() -> None:
    """list_users asks for pages of USERS_PAGE_SIZE and follows next_page_token to the end."""
    stub = PagingStub(2_345)
    client = Client("127.0.0.1:9", token="tok")
    client._stub = stub  # type: ignore[assignment]
    users = await client.list_users(online_only=True)
    assert [u.username for u in users] == stub.users
    assert [(r.page_size, r.page_token, r.online_only) for r in stub.requests] == [
        (1000, "", True),
        (1000, "1000", True),
        (1000, "2000", True),
    ]
    await client.close()


async def test_list_users_stops_on_a_repeated_page_token() -> None:
    """A server that hands out the same token twice gets an error, not an endless loop."""

    class Loop(PagingStub):
        async def ListUsers(self, request: Any, **_: Any) -> Any:
            return pb.ListUsersResponse(users=[pb.User(username="a")], next_page_token="again")

    client = Client("127.0.0.1:9", token="tok")
    client._stub = Loop(0)  # type: ignore[assignment]
    with pytest.raises(HubbubError):
        await client.list_users()
    await client.close()


async def test_send_message_uses_the_unary_rpc() -> None:
    """send_message fills one destination and returns the SendResult as SendConfirmed."""
    stub = PagingStub(0)
    client = Client("127.0.0.1:9", token="tok")
    client._stub = stub  # type: ignore[assignment]
    result = await client.send_message("", "hi", "cid-1", random_recipient=True)
    assert result == SendConfirmed("cid-1", 7, 3, T0, False, False, "carol")
    request = stub.requests[0]
    assert request.WhichOneof("destination") == "random_recipient" and request.body == "hi"
    await client.send_message("", "hi", group="team")
    assert stub.requests[1].group == "team" and len(stub.requests[1].client_id) == 32
    await client.close()


def test_refusal_wording_comes_from_the_kind() -> None:
    """The CLI picks its line from the refusal's ErrorKind (a status number still works)."""
    from hubbub.client import render

    event = EventRejected(1, "c", 7, "", "no")
    assert render.rejection_text(event.reason, event.kind.value, set(), "team") == (
        "You are not a member of #team."
    )
    assert render.rejection_text("", "not_found", set()) == render.USER_NOT_FOUND
    assert render.rejection_text("", 5, set(), "team") == "The group #team does not exist."
    assert render.rejection_text("", "invalid_argument", {"body"}) == render.BODY_ERROR
