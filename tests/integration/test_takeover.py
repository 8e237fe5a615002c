"""A client takes over its own stale stream with its resume token (issue 9 item 4), and
every refusal says whether to retry (ErrorInfo.metadata["retry"], RetryInfo, Error.retry)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from hubbub.server.config import ServerConfig
from hubbub.server.errors import HubbubError
from hubbub.server.grpc_errors import to_status
from hubbub.v1 import messenger_pb2 as pb

from .conftest import Chat, Node, auth, open_chat, open_node, register_login

pytestmark = pytest.mark.timeout(30)

NodeFactory = Callable[..., Awaitable[Node]]


def details(error: grpc.aio.AioRpcError) -> tuple[str, str, float | None]:
    """(ErrorInfo reason, metadata["retry"], RetryInfo delay in s or None) of a failed call."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    reason, retry, delay = "", "", None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        wait = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            reason, retry = info.reason, info.metadata["retry"]
        elif detail.Unpack(wait):
            delay = wait.retry_delay.ToNanoseconds() / 1e9
    return reason, retry, delay


async def stream_error(chat: Chat, wait_s: float = 5.0) -> grpc.aio.AioRpcError:
    """Read until the stream fails; the error."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        while True:
            event = await asyncio.wait_for(chat.call.read(), wait_s)
            assert isinstance(event, pb.ChatResponse), "the stream ended with OK"  # not EOF
            chat.seen.append(event)
    return info.value


def chat_with(node: Node, token: str, resume_token: str = "") -> Chat:
    """A Chat call, with the ``hubbub-resume-token`` metadata if given."""
    metadata = auth(token)
    if resume_token:
        metadata += (("hubbub-resume-token", resume_token),)
    return Chat(node.stub.Chat(None, metadata=metadata))


async def test_the_resume_token_takes_over_the_stale_stream_at_once(node: Node) -> None:
    """A new stream showing the current stream's resume token is welcomed at once; the old
    one ends ABORTED (SESSION_TAKEN_OVER, no retry) and others never see the user offline."""
    alice = await register_login(node, "alice")
    bob = await register_login(node, "bob")
    b = await open_chat(node, bob)
    await b.next("synced")
    old = await open_chat(node, alice)
    resume_token = old.seen[0].welcome.resume_token
    await old.next("synced")
    started = time.monotonic()
    new = chat_with(node, alice, resume_token)
    welcome = (await new.next("welcome")).welcome
    assert time.monotonic() - started < 1.0
    assert welcome.resume_token and welcome.resume_token != resume_token
    error = await stream_error(old)
    assert error.code() == grpc.StatusCode.ABORTED
    assert details(error) == ("SESSION_TAKEN_OVER", "false", None)
    await new.write(pb.ChatRequest(resume=pb.Resume()))
    await new.next("synced")
    await b.send("alice", "to the new stream", "b1")
    (msg,) = await new.messages(1)
    assert msg.body == "to the new stream"
    assert "alice" in node.server.hub.sessions
    changes = [e.presence_change.user for e in b.seen if e.WhichOneof("event") == "presence_change"]
    assert all(u.presence == pb.PRESENCE_ONLINE for u in changes if u.username == "alice")
    await new.close()
    await b.close()


async def test_a_second_stream_without_the_right_token_is_refused_for_good(node: Node) -> None:
    """Without the resume token, or with another one, a second stream gets ALREADY_EXISTS
    with retry "false" and no RetryInfo; the first stream is untouched."""
    alice = await register_login(node, "alice")
    first = await open_chat(node, alice)
    await first.next("synced")
    for resume_token in ("", "not-the-token"):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await chat_with(node, alice, resume_token).next()
        assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert details(info.value) == ("ALREADY_CONNECTED", "false", None)
    await first.write(pb.ChatRequest(ping=pb.Ping(nonce=7)))
    assert (await first.next("pong")).pong.nonce == 7
    await first.close()


async def test_refusals_say_whether_to_retry(node_factory: NodeFactory) -> None:
    """UNAUTHENTICATED: no retry; SLOW_CONSUMER: retry with RetryInfo; in-stream errors carry
    Error.retry (unknown user: false; nobody online for a random send: true)."""
    node = await node_factory(outbox_events=4)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await chat_with(node, "bad-token").next()
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert details(info.value) == ("TOKEN_INVALID", "false", None)
    alice = await register_login(node, "alice")
    bob = await register_login(node, "bob")
    a = await open_chat(node, alice)
    await a.send("nobody", "hello?", "n1")
    missing = (await a.next("error")).error
    assert (missing.reason, missing.retry) == ("USER_NOT_FOUND", False)
    await a.write(
        pb.ChatRequest(send=pb.SendMessage(client_id="r1", random_recipient=True, body="hi"))
    )
    lonely = (await a.next("error")).error
    assert (lonely.reason, lonely.retry) == ("NOBODY_ONLINE", True)
    slow = chat_with(node, bob)  # never reads past its welcome
    await slow.next("welcome")
    await slow.write(pb.ChatRequest(resume=pb.Resume()))
    for i in range(400):  # alice reads her results; bob reads nothing (flow control fills)
        await a.send("bob", "x" * 30_000, f"s{i}")
        await a.next("send_result")
        if slow.call.done():
            break
    error = await stream_error(slow)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    reason, retry, delay = details(error)
    assert (reason, retry) == ("SLOW_CONSUMER", "true") and delay is not None and delay > 0
    await a.close()


async def test_shutdown_ends_streams_with_a_retryable_status(db_path: Path) -> None:
    """A graceful shutdown says going_away, then ends the stream UNAVAILABLE with retry."""
    node = await open_node(ServerConfig(host="127.0.0.1", port=0, database=str(db_path)))
    try:
        alice = await register_login(node, "alice")
        chat = await open_chat(node, alice)
        await chat.next("synced")
        stopping = asyncio.create_task(node.server.stop(grace_s=1.0))
        error = await stream_error(chat)
        await stopping
    finally:
        await node.channel.close(None)
    assert any(e.WhichOneof("event") == "going_away" for e in chat.seen)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    reason, retry, delay = details(error)
    assert (reason, retry) == ("SERVER_SHUTDOWN", "true") and delay is not None


def _all_errors(cls: type[HubbubError]) -> list[type[HubbubError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found += _all_errors(sub)
    return found


def test_every_error_class_maps_its_retry_flag_into_the_status() -> None:
    """Each domain error's ``retry`` becomes ErrorInfo.metadata["retry"], with a RetryInfo
    exactly when it is retryable (the session-ending codes as issue 9 requires)."""
    expected = {
        "ALREADY_CONNECTED": "false",
        "SESSION_TAKEN_OVER": "false",
        "SESSION_REVOKED": "false",
        "SESSION_EXPIRED": "false",
        "TOKEN_INVALID": "false",
        "SERVER_SHUTDOWN": "true",
        "SLOW_CONSUMER": "true",
    }
    seen: dict[str, str] = {}
    for cls in _all_errors(HubbubError):
        takes_delay = "retry_after_s" in inspect.signature(cls.__init__).parameters
        error = cls(3.0) if takes_delay else cls("refused")  # type: ignore[arg-type]
        trailer = dict(to_status(error).trailing_metadata)["grpc-status-details-bin"]
        proto = status_pb2.Status.FromString(trailer)
        info, wait = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
        has_wait = False
        for detail in proto.details:
            if detail.Unpack(info):
                continue
            has_wait = has_wait or detail.Unpack(wait)
        assert info.metadata["retry"] == ("true" if error.retry else "false"), cls
        assert has_wait == error.retry, cls
        seen[error.reason] = info.metadata["retry"]
    assert {k: seen[k] for k in expected} == expected
