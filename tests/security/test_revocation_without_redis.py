"""A logout while Redis cannot take the revocation (issue 9 side item): the logout still
succeeds, the logged-out session's stream on the serving node ends at once, and the other
nodes get the revocation as soon as Redis takes publishes again.

OWASP Session Management Cheat Sheet: a revoked session must not keep a live stream; a
broker outage may delay that on other nodes, never cancel it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from hubbub.v1 import messenger_pb2 as pb

from ..backends import postgres_server, postgres_url, redis_server, redis_url
from ..integration.conftest import (
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
END_WITHIN_S = 2.0


class PublishOutage:
    """Makes one node's Redis publishes fail (as if Redis were down for it) until ended."""

    def __init__(self, node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
        self.failed = 0
        self.down = True
        publisher = node.server.hub.broker._publisher  # type: ignore[attr-defined]
        publish = publisher.publish

        async def failing(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                self.failed += 1
                raise RedisConnectionError("Redis is down (test)")
            return await publish(*args, **kwargs)

        monkeypatch.setattr(publisher, "publish", failing)

    def end(self) -> None:
        """Redis takes publishes again."""
        self.down = False


@pytest.fixture
async def two_nodes(
    postgres_url: str, redis_url: str, node_factory: NodeFactory
) -> tuple[Node, Node]:
    """Nodes A and B on one PostgreSQL database and one Redis."""
    shared = {"postgres_url": postgres_url, "redis_url": redis_url}
    return await node_factory(**shared), await node_factory(**shared)


async def test_logout_without_redis_ends_the_stream_on_the_serving_node(
    two_nodes: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Node A cannot publish: a Logout on A still succeeds, and the logged-out session's
    stream on A ends within END_WITHIN_S (UNAUTHENTICATED SESSION_REVOKED)."""
    node_a, _ = two_nodes
    token = await register_login(node_a, "alice")
    stream = await open_chat(node_a, token)
    await stream.next("synced")
    outage = PublishOutage(node_a, monkeypatch)
    await node_a.stub.Logout(pb.LogoutRequest(), metadata=auth(token))
    assert outage.failed >= 1, "the revocation was not even tried"
    error, _ = await ended_with(stream, END_WITHIN_S)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason_of(error) == "SESSION_REVOKED"


async def test_a_revocation_redis_missed_reaches_the_other_node_once_redis_is_back(
    two_nodes: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Node A cannot publish when alice logs out there; her stream on node B stays until
    Redis takes A's publishes again, then ends within END_WITHIN_S."""
    node_a, node_b = two_nodes
    token = await register_login(node_a, "alice")
    stream = await open_chat(node_b, token)
    await stream.next("synced")
    outage = PublishOutage(node_a, monkeypatch)
    await node_a.stub.Logout(pb.LogoutRequest(), metadata=auth(token))
    await asyncio.sleep(1.0)
    outage.end()
    error, _ = await ended_with(stream, END_WITHIN_S + 2)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason_of(error) == "SESSION_REVOKED"
