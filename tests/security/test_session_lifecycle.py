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
