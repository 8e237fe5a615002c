"""Unary SendMessage (issue 9 item 5): a script posts while the user's Chat stream is open."""

from __future__ import annotations

import grpc
import pytest

from hubbub.v1 import messenger_pb2 as pb
from hubbub.v1 import messenger_pb2_grpc as pb_grpc

from .conftest import Node, auth, open_chat, register_login

pytestmark = pytest.mark.timeout(60)


async def test_send_message_while_the_sender_chats_elsewhere(node: Node) -> None:
    """With alice's Chat open, SendMessage on another channel with her token is stored once,
    reaches bob's live stream, and a resend is answered duplicate=true with the same id."""
    alice = await register_login(node, "alice")
    bob = await register_login(node, "bob")
    alice_chat = await open_chat(node, alice)
    await alice_chat.next("synced")
    bob_chat = await open_chat(node, bob)
    await bob_chat.next("synced")
    script = grpc.aio.insecure_channel(node.address)
    try:
        stub = pb_grpc.MessengerServiceStub(script)
        request = pb.SendMessageRequest(client_id="script-1", recipient="Bob", body="from cron")
        reply = await stub.SendMessage(request, metadata=auth(alice), timeout=10)
        result = reply.result
        assert (result.client_id, result.duplicate, result.recipient) == ("script-1", False, "bob")
        assert result.sequence == 1 and result.recipient_online and result.message_id > 0
        (message,) = await bob_chat.messages(1)
        assert (message.sender, message.body, message.sequence) == ("alice", "from cron", 1)
        again = (await stub.SendMessage(request, metadata=auth(alice), timeout=10)).result
        assert (again.duplicate, again.message_id, again.sequence) == (
            True,
            result.message_id,
            1,
        )
        # The interactive stream of alice keeps working next to the script.
        await alice_chat.send("bob", "from the chat", "chat-1")
        assert not (await alice_chat.next("send_result")).send_result.duplicate
        (second,) = await bob_chat.messages(1)
        assert (second.body, second.sequence) == ("from the chat", 2)
    finally:
        await script.close(None)
        await alice_chat.close()
        await bob_chat.close()


async def test_send_message_to_a_group(node: Node) -> None:
    """SendMessage to a group reaches every other member's inbox."""
    alice = await register_login(node, "alice")
    bob = await register_login(node, "bob")
    await node.stub.CreateGroup(
        pb.CreateGroupRequest(name="crew", members=["bob"]), metadata=auth(alice), timeout=10
    )
    reply = await node.stub.SendMessage(
        pb.SendMessageRequest(client_id="g1", group="#crew", body="hello crew"),
        metadata=auth(alice),
        timeout=10,
    )
    assert reply.result.message_id > 0 and not reply.result.duplicate
    again = await node.stub.SendMessage(
        pb.SendMessageRequest(client_id="g1", group="CREW", body="hello crew"),
        metadata=auth(alice),
        timeout=10,
    )
    assert (again.result.duplicate, again.result.message_id) == (True, reply.result.message_id)
    page = await node.stub.ListHistory(
        pb.ListHistoryRequest(group="crew"), metadata=auth(bob), timeout=10
    )
    assert [(m.sender, m.body) for m in page.messages] == [("alice", "hello crew")]


async def test_send_message_resend_to_a_random_recipient_is_a_duplicate(node: Node) -> None:
    """A resend of a random-recipient message is a duplicate naming whoever got it first."""
    alice = await register_login(node, "alice")
    bob = await register_login(node, "bob")
    bob_chat = await open_chat(node, bob)
    await bob_chat.next("synced")
    try:
        request = pb.SendMessageRequest(client_id="r1", random_recipient=True, body="anyone?")
        first = (await node.stub.SendMessage(request, metadata=auth(alice), timeout=10)).result
        again = (await node.stub.SendMessage(request, metadata=auth(alice), timeout=10)).result
        assert (first.recipient, first.duplicate) == ("bob", False)
        assert (again.recipient, again.duplicate, again.message_id) == (
            "bob",
            True,
            first.message_id,
        )
    finally:
        await bob_chat.close()


@pytest.mark.parametrize(
    ("request_", "code", "reason"),
    [
        (
            pb.SendMessageRequest(client_id="e1", recipient="nobody", body="x"),
            grpc.StatusCode.NOT_FOUND,
            "USER_NOT_FOUND",
        ),
        (
            pb.SendMessageRequest(client_id="e2", recipient="bob", body=""),
            grpc.StatusCode.INVALID_ARGUMENT,
            "MESSAGE_INVALID",
        ),
        (
            pb.SendMessageRequest(client_id="", recipient="bob", body="x"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "EVENT_MALFORMED",
        ),
        (
            pb.SendMessageRequest(client_id="e3", body="x"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "EVENT_MALFORMED",
        ),
        (
            pb.SendMessageRequest(client_id="e4", group="nogroup", body="x"),
            grpc.StatusCode.NOT_FOUND,
            "GROUP_NOT_FOUND",
        ),
        (
            pb.SendMessageRequest(client_id="e5", random_recipient=True, body="x"),
            grpc.StatusCode.FAILED_PRECONDITION,
            "NOBODY_ONLINE",
        ),
        (
            pb.SendMessageRequest(client_id="first", recipient="carol", body="other"),
            grpc.StatusCode.FAILED_PRECONDITION,
            "CLIENT_ID_REUSED",
        ),
    ],
    ids=["no-user", "empty-body", "no-client-id", "no-destination", "no-group", "nobody", "reused"],
)
async def test_send_message_errors(
    node: Node, request_: pb.SendMessageRequest, code: grpc.StatusCode, reason: str
) -> None:
    """SendMessage refuses what a Chat send refuses, with the same status and reason."""
    from grpc_status import rpc_status

    alice = await register_login(node, "alice")
    await register_login(node, "bob")
    await register_login(node, "carol")
    await node.stub.SendMessage(
        pb.SendMessageRequest(client_id="first", recipient="bob", body="the original"),
        metadata=auth(alice),
        timeout=10,
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await node.stub.SendMessage(request_, metadata=auth(alice), timeout=10)
    assert info.value.code() == code, info.value.details()
    status = rpc_status.from_call(info.value)  # type: ignore[arg-type]
    assert status is not None and any(reason.encode() in d.value for d in status.details)
    with_bob = await node.stub.ListHistory(
        pb.ListHistoryRequest(username="bob"), metadata=auth(alice), timeout=10
    )
    assert [m.body for m in with_bob.messages] == ["the original"]
    with_carol = await node.stub.ListHistory(
        pb.ListHistoryRequest(username="carol"), metadata=auth(alice), timeout=10
    )
    assert list(with_carol.messages) == []


async def test_send_message_needs_a_token(node: Node) -> None:
    """SendMessage without a token is UNAUTHENTICATED."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await node.stub.SendMessage(
            pb.SendMessageRequest(client_id="x", recipient="bob", body="x"), timeout=10
        )
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
