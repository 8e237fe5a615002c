"""Cluster-wide throttling (issue 8, holes 2 and 3): two nodes on one PostgreSQL and one Redis
share the login and registration budgets (the limits library's Redis storage)."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from hubbub.server.errors import ThrottleUnavailable
from hubbub.server.throttle import Throttle
from hubbub.v1 import messenger_pb2 as pb
from tests.backends import free_port, postgres_server, postgres_url, redis_server, redis_url
from tests.integration.conftest import PASSWORD, Node
from tests.security.conftest import NodeFactory
from tests.security.test_login_throttle import BUDGET, VerifyCounter, outcome, reason, refused

__all__ = ["postgres_server", "postgres_url", "redis_server", "redis_url"]  # fixtures by name


@pytest.fixture
async def nodes(postgres_url: str, redis_url: str, node_factory: NodeFactory) -> tuple[Node, Node]:
    """Nodes A and B on the same PostgreSQL database and Redis (stopped before both are dropped)."""
    shared = {"postgres_url": postgres_url, "redis_url": redis_url}
    return await node_factory(**shared), await node_factory(**shared)


@pytest.mark.timeout(180)
async def test_parallel_guesses_on_two_nodes_share_one_budget(nodes: tuple[Node, Node]) -> None:
    """40 parallel wrong logins split over two nodes run at most 5 argon2 checks in all."""
    a, b = nodes
    await a.stub.Register(pb.RegisterRequest(username="alice", password=PASSWORD))
    counters = [VerifyCounter(a), VerifyCounter(b)]
    codes = await asyncio.gather(
        *(
            outcome(node.stub.Login(pb.LoginRequest(username="alice", password=f"guess-{i}")))
            for i in range(20)
            for node in nodes
        )
    )
    assert sum(c.calls for c in counters) <= BUDGET
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 40 - BUDGET
    for node in nodes:
        err = await refused(node.stub.Login(pb.LoginRequest(username="alice", password=PASSWORD)))
        assert reason(err) == "LOGIN_THROTTLED"


@pytest.mark.timeout(120)
async def test_register_limit_is_shared_by_the_nodes(
    postgres_url: str, redis_url: str, node_factory: NodeFactory
) -> None:
    """Registrations from one address count on every node: 3 on A and B together, then refused."""
    shared = {"postgres_url": postgres_url, "redis_url": redis_url, "register_limit": "3 per hour"}
    a, b = await node_factory(**shared), await node_factory(**shared)
    for name, node in (("user1", a), ("user2", b), ("user3", a)):
        await node.stub.Register(pb.RegisterRequest(username=name, password=PASSWORD))
    err = await refused(b.stub.Register(pb.RegisterRequest(username="user4", password=PASSWORD)))
    assert reason(err) == "REGISTRATION_THROTTLED"


@pytest.mark.timeout(30)
async def test_unreachable_redis_refuses_attempts_instead_of_skipping_the_limit() -> None:
    """With Redis down every attempt is refused (ThrottleUnavailable), never let through."""
    throttle = Throttle(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(ThrottleUnavailable):
            await throttle.login_attempt("alice", "10.0.0.1")
        with pytest.raises(ThrottleUnavailable):
            await throttle.registration("10.0.0.1")
    finally:
        await throttle.close()
