"""Integration tests of Register, Login, Logout, ListUsers, health and restarts."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from hubbub.server.auth import token_hash
from hubbub.server.models import utc_now
from hubbub.server.store_sqlite import SqliteStore
from hubbub.v1 import messenger_pb2 as pb

from .conftest import PASSWORD, Node, auth, close_node, open_chat, open_node, register_login

pytestmark = pytest.mark.timeout(30)


def bad_request_fields(error: grpc.aio.AioRpcError) -> list[str]:
    """Field names of the google.rpc.BadRequest detail of a failed call."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]  # an AioRpcError is a grpc.Call
    assert status is not None, "no rich status details"
    fields = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations]
    return fields


async def expect_error(call: Awaitable[object], code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    """Await ``call`` and check it fails with ``code``."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == code, info.value.details()
    return info.value


@pytest.mark.parametrize(
    "name",
    [
        "ab",
        "x" * 33,
        "bad!name",
        "a@b",
        "has space",
        "zero\u200bwidth",
        "tab\tname",
        "@alice",
        "!quit",
        "#room",
        "/cmd",
        "dollar$",
        "",
    ],
)
async def test_register_refuses_bad_usernames_with_field_details(node: Node, name: str) -> None:
    """Disallowed usernames get INVALID_ARGUMENT with a BadRequest violation on 'username'."""
    err = await expect_error(
        node.stub.Register(pb.RegisterRequest(username=name, password=PASSWORD)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_request_fields(err) == ["username"]


@pytest.mark.parametrize("name", ["echobot", "EchoBot", "server", "system", "admin"])
async def test_register_refuses_reserved_names(node: Node, name: str) -> None:
    """Names the server uses itself cannot be registered."""
    err = await expect_error(
        node.stub.Register(pb.RegisterRequest(username=name, password=PASSWORD)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "reserved" in (err.details() or "")


async def test_register_taken_name_is_case_insensitive(node: Node) -> None:
    """A name differing only by case (or width) from an existing one is ALREADY_EXISTS."""
    reply = await node.stub.Register(pb.RegisterRequest(username="Alice", password=PASSWORD))
    assert reply.user.username == "alice" and reply.user.display_name == "Alice"
    for clash in ["alice", "ALICE", "Ａｌｉｃｅ"]:
        await expect_error(
            node.stub.Register(pb.RegisterRequest(username=clash, password=PASSWORD)),
            grpc.StatusCode.ALREADY_EXISTS,
        )


async def test_register_accepts_unicode_letters_and_punctuation(node: Node) -> None:
    """Letters of any script, digits, '_', '.' and '-' are allowed."""
    for name in ["Ångström", "jean-luc.p_1", "Дмитрий"]:
        await node.stub.Register(pb.RegisterRequest(username=name, password=PASSWORD))
    await node.stub.Login(pb.LoginRequest(username="ÅNGSTRÖM", password=PASSWORD))


async def test_register_refuses_weak_password_and_bad_display_name(node: Node) -> None:
    """Short passwords and display names with control characters are INVALID_ARGUMENT."""
    err = await expect_error(
        node.stub.Register(pb.RegisterRequest(username="carol", password="short")),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_request_fields(err) == ["password"]
    err = await expect_error(
        node.stub.Register(
            pb.RegisterRequest(username="carol", password=PASSWORD, display_name="a\x07b")
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_request_fields(err) == ["display_name"]


async def test_wrong_password_and_unknown_user_get_the_same_answer(node: Node) -> None:
    """Login failures do not reveal whether the account exists (same status, same text)."""
    await register_login(node, "alice")
    wrong = await expect_error(
        node.stub.Login(pb.LoginRequest(username="alice", password="not the password")),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    unknown = await expect_error(
        node.stub.Login(pb.LoginRequest(username="nobody", password="not the password")),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert wrong.details() == unknown.details()


async def test_echobot_cannot_log_in(node: Node) -> None:
    """The built-in bot has no usable password."""
    await expect_error(
        node.stub.Login(pb.LoginRequest(username="echobot", password=PASSWORD)),
        grpc.StatusCode.UNAUTHENTICATED,
    )


async def test_repeated_failures_are_throttled(node: Node) -> None:
    """After 5 failed logins the name is locked out, even for the right password."""
    await register_login(node, "alice")
    for _ in range(5):
        await expect_error(
            node.stub.Login(pb.LoginRequest(username="alice", password="wrong password")),
            grpc.StatusCode.UNAUTHENTICATED,
        )
    err = await expect_error(
        node.stub.Login(pb.LoginRequest(username="alice", password=PASSWORD)),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )
    assert "Too many failed login attempts" in (err.details() or "")


async def test_user_rpcs_refuse_callers_without_a_valid_token(node: Node) -> None:
    """ListUsers and Logout without, or with a bad, token are UNAUTHENTICATED."""
    for metadata in [(), auth("forged"), (("authorization", "Bearer"),)]:
        await expect_error(
            node.stub.ListUsers(pb.ListUsersRequest(), metadata=metadata),
            grpc.StatusCode.UNAUTHENTICATED,
        )
        await expect_error(
            node.stub.Logout(pb.LogoutRequest(), metadata=metadata),
            grpc.StatusCode.UNAUTHENTICATED,
        )


async def test_logout_revokes_the_token(node: Node) -> None:
    """After Logout the token is refused everywhere."""
    token = await register_login(node, "alice")
    await node.stub.Logout(pb.LogoutRequest(), metadata=auth(token))
    await expect_error(
        node.stub.ListUsers(pb.ListUsersRequest(), metadata=auth(token)),
        grpc.StatusCode.UNAUTHENTICATED,
    )


async def test_expired_token_is_refused(node: Node) -> None:
    """A session past its expiry is UNAUTHENTICATED."""
    token = await register_login(node, "alice")
    account = await node.server.store.get_account("alice")
    assert account is not None
    expired = "expired-token-value"
    await node.server.store.create_session(
        token_hash(expired), account.id, utc_now() - timedelta(seconds=1)
    )
    await expect_error(
        node.stub.ListUsers(pb.ListUsersRequest(), metadata=auth(expired)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    await node.stub.ListUsers(pb.ListUsersRequest(), metadata=auth(token))


async def test_tokens_are_stored_only_as_hashes(node: Node) -> None:
    """The database holds the token's SHA-256, never the token."""
    token = await register_login(node, "alice")
    store = node.server.store
    assert isinstance(store, SqliteStore)
    raw = store.path.read_bytes()
    assert token.encode() not in raw
    assert await node.server.store.get_session(token_hash(token), utc_now()) is not None


async def test_login_returns_expiry_and_user(node: Node) -> None:
    """Login gives a >=128-bit token, its expiry in the future and the account."""
    await node.stub.Register(
        pb.RegisterRequest(username="alice", password=PASSWORD, display_name="Alice A.")
    )
    reply = await node.stub.Login(pb.LoginRequest(username="ALICE", password=PASSWORD))
    assert len(reply.token) >= 22  # 128 bits in URL-safe base64
    assert reply.expire_time.seconds > time.time()
    assert (reply.user.username, reply.user.display_name) == ("alice", "Alice A.")


async def test_health_and_reflection_are_served(node: Node) -> None:
    """grpc.health.v1 reports SERVING for the server and the Hubbub service."""
    stub = health_pb2_grpc.HealthStub(node.channel)
    for service in ["", "hubbub.v1.MessengerService"]:
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_stored_messages_survive_a_restart(
    node_factory: Callable[..., Awaitable[Node]],
) -> None:
    """Messages stored for an offline user are delivered after the server restarts."""
    node = await node_factory()
    alice = await register_login(node, "alice")
    await register_login(node, "bob")
    a = await open_chat(node, alice)
    for i in range(3):
        await a.send("bob", f"before restart {i}", f"r{i}")
        await a.next("send_result")
    config = node.config
    await close_node(node)
    restarted = await open_node(config)
    try:
        bob = (await restarted.stub.Login(pb.LoginRequest(username="bob", password=PASSWORD))).token
        b = await open_chat(restarted, bob)
        msgs = await b.messages(3)
        assert [m.body for m in msgs] == [f"before restart {i}" for i in range(3)]
        # The old token of alice also survived the restart.
        await restarted.stub.ListUsers(pb.ListUsersRequest(), metadata=auth(alice))
    finally:
        await close_node(restarted)


async def test_graceful_shutdown_sends_going_away(node: Node) -> None:
    """On shutdown, health turns NOT_SERVING and each stream gets GoingAway before it ends."""
    alice = await register_login(node, "alice")
    a = await open_chat(node, alice)
    await a.next("synced")
    await node.server.hub.shutdown()
    event = await a.next("going_away")
    assert event.going_away.reason == "SERVER_SHUTDOWN"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await a.next()
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
