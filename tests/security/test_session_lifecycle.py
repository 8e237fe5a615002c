"""Session life-cycle races of issue 8: a revocation is published whatever the caller does.

OWASP Session Management Cheat Sheet: once a logout or password change is stored, the
revoked session must not keep a live stream — not when the client gives up mid-call,
not when a node's broker subscription was reconnecting, not after a node stalled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis

from hubbub.v1 import messenger_pb2 as pb

from ..backends import postgres_server, postgres_url, redis_server, redis_url
from ..integration.conftest import (
    PASSWORD,
    Node,
    auth,
    db_path,
    node,
    node_factory,
    open_chat,
    register_login,
)
from .test_revocation import ended_with, reason_of

__all__ = [  # fixtures used by name
    "db_path",
    "node",
    "node_factory",
    "postgres_server",
    "postgres_url",
    "redis_server",
    "redis_url",
]

pytestmark = pytest.mark.timeout(60)

NodeFactory = Callable[..., Awaitable[Node]]
END_WITHIN_S = 2.0  # the revoked stream ends within ~1-2 s of the stored revocation
SLOW_WRITE_S = 1.0  # the store acknowledges its (already committed) write this late
DEADLINE_S = 0.3  # the client gives up long before that
RESUBSCRIBED_END_S = 5.0  # a revocation missed while resubscribing ends the stream


def slow_after_commit(store: Any, method: str, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Make ``store.method`` commit, then answer SLOW_WRITE_S later; the event is set once
    the write has landed."""
    original = getattr(store, method)
    landed = asyncio.Event()

    async def slow(*args: Any, **kwargs: Any) -> Any:
        result = await original(*args, **kwargs)
        landed.set()
        await asyncio.sleep(SLOW_WRITE_S)
        return result

    monkeypatch.setattr(store, method, slow)
    return landed


async def test_logout_cancelled_after_the_store_write_still_ends_the_stream(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Logout whose client deadline expires while the store write is in flight still
    ends the logged-out session's live stream (UNAUTHENTICATED SESSION_REVOKED)."""
    token = await register_login(node, "alice")
    stream = await open_chat(node, token)
    await stream.next("synced")
    landed = slow_after_commit(node.server.store, "delete_session", monkeypatch)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await node.stub.Logout(pb.LogoutRequest(), metadata=auth(token), timeout=DEADLINE_S)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert landed.is_set()
    error, _ = await ended_with(stream, END_WITHIN_S)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason_of(error) == "SESSION_REVOKED"


async def test_password_change_cancelled_after_the_store_write_still_ends_the_stream(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An UpdateProfile (new password) the client cancels while the store write is in
    flight still ends the other session's live stream (SESSION_REVOKED)."""
    thief_token = await register_login(node, "alice")
    thief = await open_chat(node, thief_token)
    await thief.next("synced")
    owner = await node.stub.Login(pb.LoginRequest(username="alice", password=PASSWORD))
    landed = slow_after_commit(node.server.store, "update_account", monkeypatch)
    call = node.stub.UpdateProfile(
        pb.UpdateProfileRequest(current_password=PASSWORD, new_password="a new long password"),
        metadata=auth(owner.token),
    )
    await asyncio.wait_for(landed.wait(), 10)
    call.cancel()  # the client gives up while the store write is acknowledged
    with pytest.raises(asyncio.CancelledError):
        await call
    error, _ = await ended_with(thief, END_WITHIN_S)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason_of(error) == "SESSION_REVOKED"


@pytest.fixture
async def cluster_node(postgres_url: str, redis_url: str, node_factory: NodeFactory) -> Node:
    """A node on PostgreSQL and Redis (broker and presence in Redis); stopped before the
    database is dropped."""
    return await node_factory(postgres_url=postgres_url, redis_url=redis_url, presence_ttl_s=1.0)


async def test_revocation_published_while_the_subscription_reconnects_ends_the_stream(
    cluster_node: Node, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A logout published while the node's Redis subscription is down (connection killed,
    resubscribe held back) still ends the stream once the node has subscribed again."""
    node = cluster_node
    token = await register_login(node, "alice")
    stream = await open_chat(node, token)
    await stream.next("synced")
    broker = node.server.hub.broker
    subscriber = broker._subscriber  # type: ignore[attr-defined]
    make_pubsub = subscriber.pubsub
    resubscribing, gate = asyncio.Event(), asyncio.Event()

    def held_back_pubsub(**kwargs: Any) -> Any:
        pubsub = make_pubsub(**kwargs)
        subscribe = pubsub.subscribe

        async def held_back(*channels: Any) -> Any:
            resubscribing.set()
            await gate.wait()
            return await subscribe(*channels)

        pubsub.subscribe = held_back
        return pubsub

    monkeypatch.setattr(subscriber, "pubsub", held_back_pubsub)
    admin = aioredis.from_url(redis_url)
    try:
        await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")  # type: ignore[no-untyped-call]
    finally:
        await admin.aclose()
    await asyncio.wait_for(resubscribing.wait(), 10)
    await node.stub.Logout(pb.LogoutRequest(), metadata=auth(token))  # published, not received
    gate.set()
    error, _ = await ended_with(stream, RESUBSCRIBED_END_S)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason_of(error) == "SESSION_REVOKED"


async def test_a_claim_taken_while_the_node_stalled_ends_the_local_stream(
    cluster_node: Node, redis_url: str
) -> None:
    """A node whose heartbeat lapsed and whose user's claim was taken meanwhile by another
    stream ends its own stream (ABORTED SESSION_TAKEN_OVER) when it re-asserts its claims."""
    node = cluster_node
    token = await register_login(node, "alice")
    stream = await open_chat(node, token)
    await stream.next("synced")
    presence = node.server.hub.presence
    admin = aioredis.from_url(redis_url)
    try:  # as if this node had stalled past the TTL and another node took the user over
        # The other node is alive (its heartbeat key exists): a claim of a dead node would
        # be swept before this node re-asserts, and this node would then keep the user.
        other_node_key = presence._node_prefix + "other-node"  # type: ignore[attr-defined]
        await admin.set(other_node_key, "1", px=60_000)
        await admin.set(presence._key("alice"), "other-node 1 other-holder")  # type: ignore[attr-defined]
        await admin.delete(presence.node_key)  # type: ignore[attr-defined]
    finally:
        await admin.aclose()
    error, _ = await ended_with(stream, RESUBSCRIBED_END_S)
    assert error.code() == grpc.StatusCode.ABORTED
    assert reason_of(error) == "SESSION_TAKEN_OVER"


async def test_a_recheck_the_store_cannot_answer_ends_the_stream(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session recheck whose store reads keep failing ends the stream (UNAVAILABLE
    SESSION_UNCHECKABLE, retryable) instead of leaving it open unchecked."""
    token = await register_login(node, "alice")
    stream = await open_chat(node, token)
    await stream.next("synced")

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError("store unreachable")

    monkeypatch.setattr(node.server.store, "get_session", broken)
    node.server.hub.on_resubscribed()
    error, _ = await ended_with(stream, 10)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert reason_of(error) == "SESSION_UNCHECKABLE"
