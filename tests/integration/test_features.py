"""Integration tests of groups, history, delivery receipts, profiles and random recipients."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from hubbub.v1 import messenger_pb2 as pb

from .conftest import PASSWORD, Node, auth, open_chat, register_login
from .test_accounts import expect_error

pytestmark = pytest.mark.timeout(40)


async def three(node: Node) -> tuple[str, str, str]:
    """Register alice, bob and carol; return their tokens."""
    return (
        await register_login(node, "alice"),
        await register_login(node, "bob"),
        await register_login(node, "carol"),
    )


async def test_group_message_reaches_every_member_but_the_sender(node: Node) -> None:
    """A group send is stored in each other member's inbox; the sender gets no copy."""
    alice, bob, carol = await three(node)
    created = await node.stub.CreateGroup(
        pb.CreateGroupRequest(name="#Team", members=["bob", "carol"]), metadata=auth(alice)
    )
    assert (created.group.name, list(created.group.members)) == ("team", ["alice", "bob", "carol"])
    a = await open_chat(node, alice)
    b = await open_chat(node, bob)
    await a.write(
        pb.ChatRequest(send=pb.SendMessage(client_id="g1", group="team", body="hello team"))
    )
    result = (await a.next("send_result")).send_result
    assert (result.recipient, result.recipient_online) == ("team", True)
    update = (await b.next("group_update")).group_update
    assert (update.group, update.action, update.actor) == ("team", pb.GROUP_ACTION_CREATED, "alice")
    (msg,) = await b.messages(1)
    assert (msg.group, msg.sender, msg.body) == ("team", "alice", "hello team")
    assert msg.sequence == update.sequence + 1  # updates and messages share the inbox sequence
    c = await open_chat(node, carol)  # offline member gets it later, in order
    await c.next("group_update")
    (later,) = await c.messages(1)
    assert later.body == "hello team"
    await a.write(pb.ChatRequest(ping=pb.Ping(nonce=1)))
    kinds = [e.WhichOneof("event") for e in a.seen]
    await a.next("pong")
    assert "message" not in kinds  # no echo of one's own group message


async def test_group_resend_is_stored_once(node: Node) -> None:
    """Resending a group message with the same client id is a duplicate for every member."""
    alice, bob, _ = await three(node)
    await node.stub.CreateGroup(
        pb.CreateGroupRequest(name="team", members=["bob"]), metadata=auth(alice)
    )
    a = await open_chat(node, alice)
    for _ in range(2):
        await a.write(pb.ChatRequest(send=pb.SendMessage(client_id="same", group="team", body="x")))
    first = (await a.next("send_result")).send_result
    second = (await a.next("send_result")).send_result
    assert second.duplicate and first.message_id == second.message_id
    b = await open_chat(node, bob)
    synced = (await b.next("synced")).synced
    assert synced.last_sequence == 2  # the CREATED update and one message


async def test_group_errors(node: Node) -> None:
    """Duplicate name, unknown member, non-member actions and unknown groups are refused."""
    alice, bob, carol = await three(node)
    await node.stub.CreateGroup(
        pb.CreateGroupRequest(name="team", members=["bob"]), metadata=auth(alice)
    )
    await expect_error(
        node.stub.CreateGroup(pb.CreateGroupRequest(name="TEAM"), metadata=auth(bob)),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    err = await expect_error(
        node.stub.CreateGroup(
            pb.CreateGroupRequest(name="other", members=["bob", "ghost"]), metadata=auth(alice)
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    assert "ghost" in (err.details() or "")
    await expect_error(
        node.stub.CreateGroup(pb.CreateGroupRequest(name="bad name!"), metadata=auth(alice)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    await expect_error(
        node.stub.AddGroupMembers(
            pb.AddGroupMembersRequest(group="team", members=["carol"]), metadata=auth(carol)
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await expect_error(
        node.stub.LeaveGroup(pb.LeaveGroupRequest(group="team"), metadata=auth(carol)),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await expect_error(
        node.stub.ListHistory(pb.ListHistoryRequest(group="team"), metadata=auth(carol)),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await expect_error(
        node.stub.LeaveGroup(pb.LeaveGroupRequest(group="nope"), metadata=auth(carol)),
        grpc.StatusCode.NOT_FOUND,
    )
    c = await open_chat(node, carol)
    await c.write(pb.ChatRequest(send=pb.SendMessage(client_id="x", group="team", body="hi")))
    err_event = (await c.next("error")).error
    assert err_event.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    await c.write(pb.ChatRequest(send=pb.SendMessage(client_id="y", group="nope", body="hi")))
    assert (await c.next("error")).error.code == grpc.StatusCode.NOT_FOUND.value[0]


async def test_add_leave_and_list_groups_are_announced(node: Node) -> None:
    """Adding and leaving are announced to the group; ListGroups shows current membership."""
    alice, bob, carol = await three(node)
    await node.stub.CreateGroup(
        pb.CreateGroupRequest(name="team", members=["bob"]), metadata=auth(alice)
    )
    added = await node.stub.AddGroupMembers(
        pb.AddGroupMembersRequest(group="team", members=["carol"]), metadata=auth(bob)
    )
    assert list(added.group.members) == ["alice", "bob", "carol"]
    await node.stub.LeaveGroup(pb.LeaveGroupRequest(group="#team"), metadata=auth(alice))
    a_groups = await node.stub.ListGroups(pb.ListGroupsRequest(), metadata=auth(alice))
    c_groups = await node.stub.ListGroups(pb.ListGroupsRequest(), metadata=auth(carol))
    assert list(a_groups.groups) == []
    assert [(g.name, list(g.members)) for g in c_groups.groups] == [("team", ["bob", "carol"])]
    c = await open_chat(node, carol)
    added_event = (await c.next("group_update")).group_update
    left_event = (await c.next("group_update")).group_update
    assert (added_event.action, list(added_event.members)) == (
        pb.GROUP_ACTION_MEMBERS_ADDED,
        ["carol"],
    )
    assert (left_event.action, left_event.actor) == (pb.GROUP_ACTION_MEMBERS_LEFT, "alice")


async def test_history_pages_newest_first_for_participants(node: Node) -> None:
    """ListHistory pages a conversation newest first with a cursor; only its own messages."""
    alice, bob, _ = await three(node)
    a = await open_chat(node, alice)
    for i in range(5):
        await a.send("bob", f"a{i}", f"a{i}")
        await a.next("send_result")
    await a.send("carol", "not for bob", "c0")
    await a.next("send_result")
    b = await open_chat(node, bob)
    await b.send("alice", "b0", "b0")
    await b.next("send_result")
    page1 = await node.stub.ListHistory(
        pb.ListHistoryRequest(username="alice", page_size=4), metadata=auth(bob)
    )
    assert [m.body for m in page1.messages] == ["b0", "a4", "a3", "a2"]
    page2 = await node.stub.ListHistory(
        pb.ListHistoryRequest(username="alice", page_size=4, page_token=page1.next_page_token),
        metadata=auth(bob),
    )
    assert [m.body for m in page2.messages] == ["a1", "a0"]
    assert page2.next_page_token == ""
    await expect_error(
        node.stub.ListHistory(
            pb.ListHistoryRequest(username="alice", page_token="garbage"), metadata=auth(bob)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    await expect_error(
        node.stub.ListHistory(pb.ListHistoryRequest(username="ghost"), metadata=auth(bob)),
        grpc.StatusCode.NOT_FOUND,
    )
    await node.stub.CreateGroup(
        pb.CreateGroupRequest(name="team", members=["bob"]), metadata=auth(alice)
    )
    await a.write(pb.ChatRequest(send=pb.SendMessage(client_id="g", group="team", body="g0")))
    await a.next("send_result")
    group_page = await node.stub.ListHistory(
        pb.ListHistoryRequest(group="team"), metadata=auth(bob)
    )
    assert [(m.body, m.group) for m in group_page.messages] == [("g0", "team")]


async def test_delivery_receipt_when_recipient_acks(node: Node) -> None:
    """The sender gets a receipt when the recipient acknowledges; stored if sender is offline."""
    alice, bob, _ = await three(node)
    a = await open_chat(node, alice)
    await a.send("bob", "please confirm", "r1")
    sent = (await a.next("send_result")).send_result
    await a.close()
    b = await open_chat(node, bob)
    (msg,) = await b.messages(1)
    await b.write(pb.ChatRequest(ack=pb.Ack(sequence=msg.sequence)))
    await asyncio.sleep(0.3)
    a2 = await open_chat(node, alice)  # alice was offline when bob acked
    receipt = (await a2.next("delivery_receipt")).delivery_receipt
    assert (receipt.message_id, receipt.client_id, receipt.recipient) == (
        sent.message_id,
        "r1",
        "bob",
    )
    await a2.write(pb.ChatRequest(ack=pb.Ack(sequence=receipt.sequence)))
    await a2.send("bob", "live one", "r2")
    await a2.next("send_result")
    (live,) = await b.messages(1)
    await b.write(pb.ChatRequest(ack=pb.Ack(sequence=live.sequence)))
    live_receipt = (await a2.next("delivery_receipt")).delivery_receipt
    assert live_receipt.client_id == "r2"


async def test_update_profile_changes_name_and_password(node: Node) -> None:
    """A new display name shows in ListUsers; a new password revokes the other sessions."""
    alice = await register_login(node, "alice")
    other = (await node.stub.Login(pb.LoginRequest(username="alice", password=PASSWORD))).token
    reply = await node.stub.UpdateProfile(
        pb.UpdateProfileRequest(display_name="Alice Liddell"), metadata=auth(alice)
    )
    assert reply.user.display_name == "Alice Liddell"
    await expect_error(
        node.stub.UpdateProfile(
            pb.UpdateProfileRequest(new_password="new secret 123", current_password="wrong!"),
            metadata=auth(alice),
        ),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    await node.stub.UpdateProfile(
        pb.UpdateProfileRequest(new_password="new secret 123", current_password=PASSWORD),
        metadata=auth(alice),
    )
    await expect_error(
        node.stub.ListUsers(pb.ListUsersRequest(), metadata=auth(other)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    users = await node.stub.ListUsers(pb.ListUsersRequest(), metadata=auth(alice))
    assert users.users[0].display_name == "Alice Liddell"
    await node.stub.Login(pb.LoginRequest(username="alice", password="new secret 123"))


async def test_random_recipient(node: Node) -> None:
    """A random send goes to another online human and names them; nobody online → error."""
    alice, bob, _ = await three(node)
    a = await open_chat(node, alice)
    await a.write(
        pb.ChatRequest(send=pb.SendMessage(client_id="r0", random_recipient=True, body="anyone?"))
    )
    err = (await a.next("error")).error
    assert (err.code, err.message) == (
        grpc.StatusCode.FAILED_PRECONDITION.value[0],
        "Nobody else is online.",
    )
    b = await open_chat(node, bob)
    await a.write(
        pb.ChatRequest(send=pb.SendMessage(client_id="r1", random_recipient=True, body="hi you"))
    )
    assert (await a.next("send_result")).send_result.recipient == "bob"
    (msg,) = await b.messages(1)
    assert msg.body == "hi you"


@pytest.mark.parametrize(
    "call",
    [
        lambda s, m: s.UpdateProfile(pb.UpdateProfileRequest(), metadata=m),
        lambda s, m: s.CreateGroup(pb.CreateGroupRequest(name="g1"), metadata=m),
        lambda s, m: s.AddGroupMembers(pb.AddGroupMembersRequest(group="g1"), metadata=m),
        lambda s, m: s.LeaveGroup(pb.LeaveGroupRequest(group="g1"), metadata=m),
        lambda s, m: s.ListGroups(pb.ListGroupsRequest(), metadata=m),
        lambda s, m: s.ListHistory(pb.ListHistoryRequest(username="bob"), metadata=m),
        lambda s, m: s.ListUsers(pb.ListUsersRequest(), metadata=m),
        lambda s, m: s.Logout(pb.LogoutRequest(), metadata=m),
    ],
)
async def test_every_user_rpc_refuses_unauthenticated_callers(node: Node, call: object) -> None:
    """Out-of-order requests (before login) are denied with UNAUTHENTICATED."""
    for metadata in [(), auth("forged")]:
        await expect_error(call(node.stub, metadata), grpc.StatusCode.UNAUTHENTICATED)  # type: ignore[operator]
