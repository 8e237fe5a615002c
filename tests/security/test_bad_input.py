"""Issue 8 hole 11: bad input gets a status and a sentence, never a Python exception text."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from grpc_status import rpc_status

from hubbub.server.history import encode_token
from hubbub.v1 import messenger_pb2 as pb

from ..integration.conftest import Node, auth, open_chat, register_login

pytestmark = pytest.mark.timeout(60)
CHAT = "/hubbub.v1.MessengerService/Chat"
PYTHON_WORDS = ("Error", "Exception", "Traceback", "Unexpected", "<class", "'")


def identity(raw: bytes) -> bytes:
    """Serializer that sends bytes exactly as given."""
    return raw


def reason_of(error: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason in the status details."""
    from google.rpc import error_details_pb2

    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            found: str = info.reason
            return found
    return ""


def assert_sentence(details: str | None) -> None:
    """A human sentence, not an exception's repr."""
    assert details and details[0].isupper() and details.endswith("."), details
    assert not any(word in details for word in PYTHON_WORDS), details


def invalid_utf8_send() -> bytes:
    """A ChatRequest whose send.body is not valid UTF-8 (framing intact)."""
    good = pb.ChatRequest(send=pb.SendMessage(client_id="c1", recipient="bob", body="QQQQ"))
    return good.SerializeToString().replace(b"QQQQ", b"\xff\xfe\xc0\x80")


@pytest.mark.parametrize(
    "frame",
    [b"\xff\xff\xff\xff", b"\x0a\x7f\x01", invalid_utf8_send()],
    ids=["random-bytes", "truncated", "invalid-utf8"],
)
async def test_undecodable_chat_frame_ends_call_with_invalid_argument(
    node: Node, frame: bytes
) -> None:
    """A Chat frame that is not a ChatRequest ends the call INVALID_ARGUMENT with a sentence."""
    token = await register_login(node, "alice")
    await register_login(node, "bob")
    call: Any = node.channel.stream_stream(
        CHAT, request_serializer=identity, response_deserializer=pb.ChatResponse.FromString
    )(None, metadata=auth(token))
    welcome = await asyncio.wait_for(call.read(), 5.0)
    assert welcome.WhichOneof("event") == "welcome"
    await call.write(frame)
    code = await asyncio.wait_for(call.code(), 10.0)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert_sentence(await call.details())
    # The user is not left online: a new stream opens at once.
    chat = await open_chat(node, token)
    await chat.next("synced")
    await chat.close()


async def test_undecodable_unary_request_is_invalid_argument(node: Node) -> None:
    """Garbage on a unary call (public or authenticated) is INVALID_ARGUMENT, not UNKNOWN."""
    token = await register_login(node, "alice")
    register = node.channel.unary_unary(
        "/hubbub.v1.MessengerService/Register",
        request_serializer=identity,
        response_deserializer=pb.RegisterResponse.FromString,
    )
    bad_utf8 = pb.RegisterRequest(username="QQ", password="x" * 20).SerializeToString()
    for frame in (b"\xff\xff\xff\xff", bad_utf8.replace(b"QQ", b"\xff\xfe")):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await register(frame, timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert_sentence(info.value.details())
        assert reason_of(info.value) == "REQUEST_UNDECODABLE"
    list_users = node.channel.unary_unary(
        "/hubbub.v1.MessengerService/ListUsers",
        request_serializer=identity,
        response_deserializer=pb.ListUsersResponse.FromString,
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await list_users(b"\xff\xff\xff\xff", metadata=auth(token), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert_sentence(info.value.details())


async def test_huge_page_token_is_invalid_argument(node: Node) -> None:
    """A ListHistory page token naming id 2^63 (beyond int64) is INVALID_ARGUMENT."""
    token = await register_login(node, "alice")
    await register_login(node, "bob")
    for page_token in (encode_token(2**63), encode_token(10**40)):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await node.stub.ListHistory(
                pb.ListHistoryRequest(username="bob", page_token=page_token),
                metadata=auth(token),
                timeout=10,
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "page_token" in (info.value.details() or "")
        assert not any(w in (info.value.details() or "") for w in PYTHON_WORDS)


async def test_unexpected_exception_is_internal_without_its_text(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in a handler answers INTERNAL "internal error"; the exception text stays in the log."""
    token = await register_login(node, "alice")

    async def broken(online_only: bool) -> None:
        raise RuntimeError("secret /etc/hubbub detail")

    monkeypatch.setattr(node.server.hub, "list_users", broken)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await node.stub.ListUsers(pb.ListUsersRequest(), metadata=auth(token), timeout=10)
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert info.value.details() == "internal error"


async def test_client_id_reused_for_another_message_is_refused(node: Node) -> None:
    """On the stream, a client id reused for another recipient or body is FAILED_PRECONDITION
    CLIENT_ID_REUSED; the first message stays the only one, and an exact resend is a duplicate."""
    alice = await register_login(node, "alice")
    await register_login(node, "bob")
    carol = await register_login(node, "carol")
    chat = await open_chat(node, alice)
    await chat.next("synced")
    await chat.send("bob", "for bob only", "c1")
    first = (await chat.next("send_result")).send_result
    assert not first.duplicate
    await chat.send("carol", "for carol", "c1")
    err = (await chat.next("error")).error
    assert (err.code, err.reason, err.client_id) == (
        grpc.StatusCode.FAILED_PRECONDITION.value[0],
        "CLIENT_ID_REUSED",
        "c1",
    )
    await chat.send("bob", "another body", "c1")
    err = (await chat.next("error")).error
    assert err.reason == "CLIENT_ID_REUSED"
    await chat.send("BOB", "for bob only", "c1")  # the same message (any case of the name)
    again = (await chat.next("send_result")).send_result
    assert (again.duplicate, again.message_id, again.recipient) == (True, first.message_id, "bob")
    await chat.close()
    seen = await node.stub.ListHistory(
        pb.ListHistoryRequest(username="alice"), metadata=auth(carol), timeout=10
    )
    assert list(seen.messages) == []


async def test_unexpected_exception_in_chat_is_internal(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug while handling a Chat event ends the call INTERNAL "internal error" (not OK,
    not the exception text) and the user is not left online."""
    token = await register_login(node, "alice")
    chat = await open_chat(node, token)
    await chat.next("synced")

    async def broken(session: object, event: object) -> None:
        raise RuntimeError("secret /etc/hubbub detail")

    monkeypatch.setattr(node.server.hub, "handle", broken)
    await chat.write(pb.ChatRequest(ping=pb.Ping(nonce=1)))
    assert await asyncio.wait_for(chat.call.code(), 10.0) == grpc.StatusCode.INTERNAL
    assert await chat.call.details() == "internal error"
    monkeypatch.undo()
    again = await open_chat(node, token)
    await again.next("synced")
    await again.close()
