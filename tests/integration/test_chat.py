"""Integration tests of the Chat stream against the real server in-process."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import grpc
import pytest

from hubbub.v1 import messenger_pb2 as pb

from .conftest import Node, auth, open_chat, register_login

pytestmark = pytest.mark.timeout(30)


async def test_two_users_exchange_messages_both_ways(node: Node) -> None:
    """Register → login → ListUsers → two Chat streams exchange messages in both directions."""
    alice = await register_login(node, "alice", "Alice A.")
    bob = await register_login(node, "bob")
    users = await node.stub.ListUsers(pb.ListUsersRequest(), metadata=auth(alice))
    assert [u.username for u in users.users] == ["alice", "bob", "echobot"]
    a = await open_chat(node, alice)
    b = await open_chat(node, bob)
    await a.send("bob", "hi bob", "a1")
    result = (await a.next("send_result")).send_result
    assert result.client_id == "a1" and result.sequence == 1 and result.recipient_online
    (msg,) = await b.messages(1)
    assert (msg.sender, msg.body, msg.sequence, msg.sender_display_name) == (
        "alice",
        "hi bob",
        1,
        "Alice A.",
    )
    assert msg.message_id == result.message_id
    await b.send("ALICE", "hello alice", "b1")  # recipient names are case-insensitive
    (back,) = await a.messages(1)
    assert (back.sender, back.body, back.sequence) == ("bob", "hello alice", 1)
    await a.close()
    await b.close()


async def test_welcome_lists_online_users_first(node: Node) -> None:
    """The first event of a stream is Welcome with the online users (self and echobot)."""
    alice = await register_login(node, "alice")
    bob = await register_login(node, "bob")
    b = await open_chat(node, bob)
    call = node.stub.Chat(None, metadata=auth(alice))
    first = await asyncio.wait_for(call.read(), 5)
    assert isinstance(first, pb.ChatResponse) and first.WhichOneof("event") == "welcome"
    assert [u.username for u in first.welcome.online_users] == ["alice", "bob", "echobot"]
    assert first.welcome.user.username == "alice"
    call.cancel()
    await b.close()


async def test_offline_recipient_gets_messages_in_order_on_connect(node: Node) -> None:
    """Messages to an offline user are stored and replayed in order on the next connect."""
    alice = await register_login(node, "alice")
    bob = await register_login(node, "bob")
    a = await open_chat(node, alice)
    for i in range(5):
        await a.send("bob", f"m{i}", f"c{i}")
        assert not (await a.next("send_result")).send_result.recipient_online
    b = await open_chat(node, bob)
    msgs = await b.messages(5)
    assert [m.body for m in msgs] == [f"m{i}" for i in range(5)]
    assert [m.sequence for m in msgs] == [1, 2, 3, 4, 5]
    assert (await b.next("synced")).synced.last_sequence == 5


async def test_reconnect_with_last_sequence_gets_exactly_the_missing(node: Node) -> None:
    """A client resuming after sequence N receives exactly N+1.. and nothing before."""
    alice = await register_login(node, "alice")
    bob = await register_login(node, "bob")
    a = await open_chat(node, alice)
    for i in range(6):
        await a.send("bob", f"m{i}", f"c{i}")
        await a.next("send_result")
    b = await open_chat(node, bob, after=4)
    msgs = await b.messages(2)
    assert [m.sequence for m in msgs] == [5, 6]
    assert (await b.next("synced")).synced.last_sequence == 6
    await a.send("bob", "live", "c-live")
    (live,) = await b.messages(1)
    assert (live.sequence, live.body) == (7, "live")


async def test_acked_cursor_is_used_when_resume_has_no_position(node: Node) -> None:
    """Without after_sequence the server resumes from the last acknowledged sequence."""
    alice = await register_login(node, "alice")
    bob = await register_login(node, "bob")
    a = await open_chat(node, alice)
    for i in range(3):
        await a.send("bob", f"m{i}", f"c{i}")
        await a.next("send_result")
    b = await open_chat(node, bob)
    await b.messages(3)
    await b.write(pb.ChatRequest(ack=pb.Ack(sequence=2)))
    await b.write(pb.ChatRequest(ping=pb.Ping(nonce=7)))
    assert (await b.next("pong")).pong.nonce == 7
    await b.close()
    await asyncio.sleep(0.2)
    b2 = await open_chat(node, bob)
    (again,) = await b2.messages(1)
    assert again.sequence == 3
    welcome = b2.seen[0].welcome
    assert (welcome.acked_sequence, welcome.last_sequence) == (2, 3)


async def test_resent_client_id_is_stored_once(node: Node) -> None:
    """A resend with the same client id is answered as a duplicate and not stored twice."""
    alice = await register_login(node, "alice")
    bob = await register_login(node, "bob")
    a = await open_chat(node, alice)
    await a.send("bob", "once", "same-id")
    first = (await a.next("send_result")).send_result
    await a.close()
    a2 = await open_chat(node, alice)  # a new stream, as after a reconnect
    await a2.send("bob", "once", "same-id")
    second = (await a2.next("send_result")).send_result
    assert second.duplicate and not first.duplicate
    assert (second.message_id, second.sequence) == (first.message_id, first.sequence)
    b = await open_chat(node, bob)
    (msg,) = await b.messages(1)
    assert (await b.next("synced")).synced.last_sequence == 1
    assert msg.body == "once"


async def test_presence_events_on_connect_and_disconnect(node: Node) -> None:
    """Other online users get presence online/offline events when a stream opens and closes."""
    alice = await register_login(node, "alice")
    bob = await register_login(node, "bob")
    a = await open_chat(node, alice)
    b = await open_chat(node, bob)
    online = (await a.next("presence_change")).presence_change.user
    assert (online.username, online.presence) == ("bob", pb.PRESENCE_ONLINE)
    assert online.HasField("presence_change_time")
    await b.close()
    offline = (await a.next("presence_change")).presence_change.user
    assert (offline.username, offline.presence) == ("bob", pb.PRESENCE_OFFLINE)
    listed = await node.stub.ListUsers(pb.ListUsersRequest(online_only=True), metadata=auth(alice))
    assert [u.username for u in listed.users] == ["alice", "echobot"]


async def test_echobot_echoes(node: Node) -> None:
    """echobot sends every direct message back to its sender."""
    alice = await register_login(node, "alice")
    a = await open_chat(node, alice)
    await a.send("echobot", "ping me back", "e1")
    assert (await a.next("send_result")).send_result.recipient_online
    (echo,) = await a.messages(1)
    assert (echo.sender, echo.body) == ("echobot", "ping me back")


async def test_half_close_answers_everything_and_ends_ok(node: Node) -> None:
    """After the client half-closes, the server answers, delivers pending messages and ends OK."""
    alice = await register_login(node, "alice")
    bob = await register_login(node, "bob")
    b = await open_chat(node, bob)
    await b.send("alice", "stored for alice", "s1")
    await b.next("send_result")
    call = node.stub.Chat(None, metadata=auth(alice))
    await call.write(pb.ChatRequest(send=pb.SendMessage(client_id="x", recipient="bob", body="y")))
    await call.write(
        pb.ChatRequest(send=pb.SendMessage(client_id="z", recipient="echobot", body="e"))
    )
    await call.done_writing()
    kinds = []
    async for event in call:
        kinds.append(event.WhichOneof("event"))
    assert await call.code() == grpc.StatusCode.OK
    assert kinds.count("send_result") == 2
    assert kinds.count("message") == 2  # bob's stored message and echobot's reply
    assert kinds[0] == "welcome"


async def test_bad_events_get_error_events_and_stream_stays_open(node: Node) -> None:
    """Empty event, unknown recipient, empty/oversized body, bad ack: an error each, stream open."""
    alice = await register_login(node, "alice")
    a = await open_chat(node, alice)
    await a.write(pb.ChatRequest())
    err = (await a.next("error")).error
    assert (err.code, err.reason) == (grpc.StatusCode.INVALID_ARGUMENT.value[0], "EVENT_MALFORMED")
    await a.send("nobody", "hello", "u1")
    err = (await a.next("error")).error
    assert (err.code, err.client_id, err.message) == (
        5,
        "u1",
        "The destination user does not exist",
    )
    await a.send("bad name!", "hello", "u2")
    assert (await a.next("error")).error.reason == "USER_NOT_FOUND"
    await a.send("echobot", "", "u3")
    err = (await a.next("error")).error
    assert err.code == 3 and err.field_violations[0].field == "send.body"
    await a.send("echobot", "x" * 65537, "u4")
    err = (await a.next("error")).error
    assert err.field_violations[0].field == "send.body" and "65537" in err.message
    await a.send("echobot", "", "")
    assert (await a.next("error")).error.field_violations[0].field == "send.client_id"
    await a.write(pb.ChatRequest(ack=pb.Ack(sequence=99)))
    assert (await a.next("error")).error.field_violations[0].field == "ack.sequence"
    await a.send("echobot", "still open", "u5")
    assert (await a.next("send_result")).send_result.client_id == "u5"


async def test_multibyte_body_limit_counts_utf8_bytes(
    node_factory: Callable[..., Awaitable[Node]],
) -> None:
    """--max-message-bytes counts UTF-8 bytes, not characters."""
    node = await node_factory(max_message_bytes=10)
    alice = await register_login(node, "alice")
    a = await open_chat(node, alice)
    await a.send("echobot", "ééééé", "ok")  # 10 bytes
    assert (await a.next("send_result")).send_result.client_id == "ok"
    await a.send("echobot", "éééééé", "big")  # 12 bytes
    assert (await a.next("error")).error.field_violations[0].field == "send.body"


async def test_second_stream_is_refused(node: Node) -> None:
    """A second live stream for the same user gets ALREADY_EXISTS."""
    alice = await register_login(node, "alice")
    a = await open_chat(node, alice)
    call = node.stub.Chat(None, metadata=auth(alice))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "already logged in elsewhere" in (info.value.details() or "")
    await a.send("echobot", "first stream still works", "k")
    await a.next("send_result")


async def test_server_full(node_factory: Callable[..., Awaitable[Node]]) -> None:
    """Past --max-clients live streams, Chat is refused with RESOURCE_EXHAUSTED."""
    node = await node_factory(max_clients=1)
    alice = await register_login(node, "alice")
    bob = await register_login(node, "bob")
    a = await open_chat(node, alice)
    call = node.stub.Chat(None, metadata=auth(bob))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "full" in (info.value.details() or "")
    await a.close()
    await asyncio.sleep(0.2)
    b = await open_chat(node, bob)  # a slot is free again
    await b.close()


async def test_chat_needs_a_token(node: Node) -> None:
    """Chat without or with a bad token is refused with UNAUTHENTICATED."""
    for metadata in [(), auth("not-a-token"), (("authorization", "Basic abc"),)]:
        call = node.stub.Chat(None, metadata=metadata)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call.read()
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
