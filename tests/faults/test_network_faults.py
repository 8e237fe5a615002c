"""Delivery under network faults injected by a TCP proxy between client and server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest

from hubbub.server.errors import SlowConsumer
from hubbub.v1 import messenger_pb2 as pb
from hubbub.v1 import messenger_pb2_grpc as pb_grpc

from ..harness.proxy import FaultProxy
from ..integration.conftest import Chat, Node, open_chat, register_login


@pytest.fixture
async def proxy(node: Node) -> AsyncIterator[FaultProxy]:
    """A fault proxy in front of the in-process server."""
    p = FaultProxy("127.0.0.1", node.server.port)
    await p.start()
    yield p
    await p.close()


def via(node: Node, proxy: FaultProxy) -> tuple[Node, grpc.aio.Channel]:
    """A Node view whose channel goes through ``proxy`` (no BDP probing: small windows)."""
    channel = grpc.aio.insecure_channel(proxy.address, options=[("grpc.http2.bdp_probe", 0)])
    return Node(node.server, channel, pb_grpc.MessengerServiceStub(channel), node.config), channel


@pytest.mark.timeout(120)
async def test_stalled_reader_is_closed_and_others_keep_flowing(
    node: Node, proxy: FaultProxy
) -> None:
    """A recipient that stops reading is closed as SLOW_CONSUMER; others never wait for it."""
    alice = await register_login(node, "alice")
    bob = await register_login(node, "bob")
    carol = await register_login(node, "carol")
    bob_node, bob_channel = via(node, proxy)
    b = await open_chat(bob_node, bob)
    await b.next("synced")
    bob_session = node.server.hub.sessions["bob"]
    c = await open_chat(node, carol)
    a = await open_chat(node, alice)
    proxy.stall_downstream()  # bob's client stops reading
    body = "x" * 60_000
    to_bob = 0
    latencies_ms = []
    while bob_session.close_error is None and to_bob < 3000:
        await a.send("bob", body, f"b{to_bob}")
        await a.next("send_result")
        to_bob += 1
        start = time.perf_counter()
        await a.send("carol", f"c{to_bob}", f"c{to_bob}")
        await a.next("send_result")
        (msg,) = await c.messages(1, wait_s=10)  # carol is never held up by bob
        latencies_ms.append((time.perf_counter() - start) * 1000)
        assert msg.body == f"c{to_bob}"
    assert isinstance(bob_session.close_error, SlowConsumer), "the stalled stream stayed open"
    for _ in range(100):
        if "bob" not in node.server.hub.sessions:
            break
        await asyncio.sleep(0.05)
    assert "bob" not in node.server.hub.sessions
    print(
        f"stalled after {to_bob} x 60 kB; carol p50/max latency "
        f"{sorted(latencies_ms)[len(latencies_ms) // 2]:.1f}/{max(latencies_ms):.1f} ms"
    )
    proxy.resume()
    await bob_channel.close()
    b2 = await open_chat(node, bob, after=0)  # reconnect: everything is still stored
    got = await b2.messages(to_bob, wait_s=10)
    assert [m.client_id for m in got] == [f"b{i}" for i in range(to_bob)]


@pytest.mark.timeout(120)
async def test_vanished_peer_goes_offline_within_60_s(node: Node, proxy: FaultProxy) -> None:
    """A peer whose connection silently stalls (cable pulled) is shown offline within 60 s."""
    alice = await register_login(node, "alice")
    bob = await register_login(node, "bob")
    a = await open_chat(node, alice)
    bob_node, bob_channel = via(node, proxy)
    b = await open_chat(bob_node, bob)
    await b.next("synced")
    online = (await a.next("presence_change")).presence_change.user
    assert (online.username, online.presence) == ("bob", pb.PRESENCE_ONLINE)
    started = time.monotonic()
    proxy.stall()
    offline = (await a.next("presence_change", wait_s=60)).presence_change.user
    assert (offline.username, offline.presence) == ("bob", pb.PRESENCE_OFFLINE)
    print(f"vanished peer detected after {time.monotonic() - started:.1f} s")
    b.call.cancel()
    await bob_channel.close()


async def _receive_all(chat: Chat, expected: int, seen: list[int]) -> None:
    while len(seen) < expected:
        (msg,) = await chat.messages(1, wait_s=10)
        if seen and msg.sequence <= seen[-1]:
            raise AssertionError(f"sequence {msg.sequence} shown twice")
        seen.append(msg.sequence)
        await chat.write(pb.ChatRequest(ack=pb.Ack(sequence=msg.sequence)))


@pytest.mark.timeout(120)
async def test_resets_mid_frame_lose_nothing_and_show_nothing_twice(
    node: Node, proxy: FaultProxy
) -> None:
    """Connections reset mid-frame: on resume the receiver gets every message exactly once."""
    alice = await register_login(node, "alice")
    bob = await register_login(node, "bob")
    a = await open_chat(node, alice)
    total = 300
    for i in range(total):
        await a.send("bob", f"m{i} " + "y" * (i * 37 % 3000), f"m{i}")
    results = [(await a.next("send_result")).send_result for _ in range(total)]
    assert len({r.sequence for r in results}) == total
    seen: list[int] = []
    resets = 0
    while len(seen) < total and resets < 50:
        bob_node, channel = via(node, proxy)
        chat = await _open_when_free(bob_node, bob, seen[-1] if seen else 0)
        receiving = asyncio.create_task(_receive_all(chat, total, seen))
        await asyncio.sleep(0.02 * (resets % 4))
        proxy.reset(mid_frame=True)
        resets += 1
        await asyncio.wait({receiving}, timeout=10)
        receiving.cancel()
        chat.call.cancel()
        await channel.close()
    assert seen == list(range(1, total + 1)), f"after {resets} resets"
    print(f"{resets} mid-frame resets, {total} messages, lost 0, duplicated 0")


async def _open_when_free(node: Node, token: str, after: int) -> Chat:
    """Open Chat, retrying while the server still holds the previous (reset) stream."""
    for _ in range(200):
        try:
            return await open_chat(node, token, after=after)
        except (grpc.aio.AioRpcError, AssertionError):
            await asyncio.sleep(0.05)
    raise AssertionError("could not reconnect")


@pytest.mark.timeout(120)
async def test_write_stuck_past_write_timeout_closes_stream(
    node_factory: Callable[..., Awaitable[Node]],
) -> None:
    """A write stuck past --write-timeout closes the stream as SLOW_CONSUMER (queue not full)."""
    node = await node_factory(write_timeout_s=1.0)
    stall = FaultProxy("127.0.0.1", node.server.port)
    await stall.start()
    try:
        alice = await register_login(node, "alice")
        bob = await register_login(node, "bob")
        bob_node, bob_channel = via(node, stall)
        b = await open_chat(bob_node, bob)
        await b.next("synced")
        bob_session = node.server.hub.sessions["bob"]
        a = await open_chat(node, alice)
        stall.stall_downstream()  # bob's client stops reading
        for i in range(40):  # 2.4 MB: past the flow-control windows, far below the outbox bound
            await a.send("bob", "x" * 60_000, f"b{i}")
            await a.next("send_result")
        assert len(bob_session.outbox) < node.config.outbox_events
        for _ in range(200):  # 10 s
            if bob_session.close_error is not None:
                break
            await asyncio.sleep(0.05)
        assert isinstance(bob_session.close_error, SlowConsumer), "the stuck stream stayed open"
        assert "took longer than 1 s" in bob_session.close_error.message
        stall.resume()
        await bob_channel.close()
    finally:
        await stall.close()
