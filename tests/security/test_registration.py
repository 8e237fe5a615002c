"""Registration (issue 8, hole 4): per-address limit, closed registration, argon2 flood."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from typing import Any

import grpc
import pytest

from hubbub.v1 import messenger_pb2 as pb
from tests.integration.conftest import PASSWORD, Node
from tests.security.conftest import NodeFactory
from tests.security.test_login_throttle import StubFrom, reason, refused


@pytest.mark.timeout(120)
async def test_register_is_limited_per_client_address(node: Node, stub_from: StubFrom) -> None:
    """The 11th Register from one address in an hour is refused; other addresses still register."""
    for i in range(10):
        await node.stub.Register(pb.RegisterRequest(username=f"user{i}", password=PASSWORD))
    err = await refused(
        node.stub.Register(pb.RegisterRequest(username="user10", password=PASSWORD))
    )
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reason(err) == "REGISTRATION_THROTTLED"
    other = await stub_from(node, "127.0.0.2")
    reply = await other.Register(pb.RegisterRequest(username="user10", password=PASSWORD))
    assert reply.user.username == "user10"


@pytest.mark.timeout(60)
async def test_closed_registration_refuses_register(node_factory: NodeFactory) -> None:
    """With --registration closed, Register is FAILED_PRECONDITION / REGISTRATION_CLOSED."""
    node = await node_factory(registration="closed")
    err = await refused(node.stub.Register(pb.RegisterRequest(username="alice", password=PASSWORD)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason(err) == "REGISTRATION_CLOSED"
    assert "closed" in (err.details() or "")


async def timed_login(node: Node) -> float:
    """Seconds one Login of alice takes."""
    start = time.perf_counter()
    await asyncio.wait_for(
        node.stub.Login(pb.LoginRequest(username="alice", password=PASSWORD)), 60
    )
    return time.perf_counter() - start


@pytest.mark.timeout(180)
async def test_login_stays_fast_under_a_register_flood(node_factory: NodeFactory) -> None:
    """Under 64 parallel Register loops a Login takes at most a few times its idle time."""
    node = await node_factory(register_limit="1000000 per minute")
    await node.stub.Register(pb.RegisterRequest(username="alice", password=PASSWORD))
    idle = statistics.median([await timed_login(node) for _ in range(3)])
    registered = 0
    busy = asyncio.Event()  # a few registrations went through: argon2 is loaded, its queue full
    stop = asyncio.Event()

    async def flood(worker: int) -> None:
        nonlocal registered
        n = 0
        while not stop.is_set():
            with contextlib.suppress(grpc.aio.AioRpcError):
                await node.stub.Register(
                    pb.RegisterRequest(username=f"flood{worker}x{n}", password=PASSWORD)
                )
                registered += 1
                if registered >= 4:
                    busy.set()
            n += 1

    floods: list[asyncio.Task[Any]] = [asyncio.create_task(flood(i)) for i in range(64)]
    try:
        await asyncio.wait_for(busy.wait(), 60)
        under_flood = statistics.median([await timed_login(node) for _ in range(3)])
    finally:
        stop.set()
        for task in floods:
            task.cancel()
        await asyncio.gather(*floods, return_exceptions=True)
    print(f"login idle {idle:.3f} s, under a 64-way Register flood {under_flood:.3f} s")
    assert under_flood <= 5 * idle + 1.0  # generous: the machine may be busy (before: ~40x)
