"""Review attacks on Chat's abort path: hub abort vs grpc cancel, watchdog, released sessions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from hubbub.server.errors import SlowConsumer
from hubbub.server.groups import GroupService
from hubbub.server.grpc_servicer import MessengerServicer
from hubbub.server.history import HistoryService
from hubbub.server.hub import Hub
from hubbub.server.models import utc_now
from hubbub.v1 import messenger_pb2 as pb

from .conftest import Node
from .test_ghost_sessions import set_caller

pytestmark = pytest.mark.timeout(60)

NodeFactory = Callable[..., Awaitable[Node]]


class GateContext:
    """A client whose writes after the first block until the test opens ``gate``."""

    def __init__(self) -> None:
        self.writes = 0
        self.gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.blocked = asyncio.Event()

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    async def write(self, message: object) -> None:
        self.writes += 1
        if self.writes > 1:
            self.blocked.set()
            await self.gate


async def _requests() -> AsyncIterator[pb.ChatRequest]:
    yield pb.ChatRequest(resume=pb.Resume(after_sequence=0))
    await asyncio.Event().wait()  # the client keeps its side open


async def _released(hub: Hub, name: str) -> None:
    deadline = time.monotonic() + 5
    while name in hub.sessions or await hub.presence.is_online(name):
        assert time.monotonic() < deadline, f"{name} left online or in hub.sessions"
        await asyncio.sleep(0.01)


async def _stuck_chat(
    node: Node, write_timeout_s: float = 30.0
) -> tuple[Hub, asyncio.Task[None], GateContext]:
    hub = node.server.hub
    store = node.server.store
    alice = await store.create_account("alice", "Alice", "!")
    bob = await store.create_account("bob", "Bob", "!")
    for i in range(5):
        await store.store_message(bob, alice, f"b{i}", "x", utc_now())
    servicer = MessengerServicer(
        node.server.auth, hub, GroupService(hub), HistoryService(hub), write_timeout_s
    )
    await set_caller(node, alice)
    context = GateContext()
    chat = asyncio.create_task(servicer.Chat(_requests(), context))  # type: ignore[arg-type]
    await asyncio.wait_for(context.blocked.wait(), 5)
    return hub, chat, context


async def test_hub_abort_of_a_stuck_write_ends_with_the_close_error(
    node_factory: NodeFactory,
) -> None:
    """A hub abort while a write is stuck ends Chat with the session's error, not CANCELLED."""
    node = await node_factory()
    hub, chat, _ = await _stuck_chat(node)
    hub.sessions["alice"].fail(SlowConsumer("slow"))
    with pytest.raises(SlowConsumer):
        await asyncio.wait_for(chat, 5)
    await _released(hub, "alice")


async def test_hub_abort_and_client_cancel_in_one_step_stay_cancelled(
    node_factory: NodeFactory,
) -> None:
    """grpc's cancel in the same loop step as a hub abort is not swallowed by uncancel."""
    node = await node_factory()
    hub, chat, _ = await _stuck_chat(node)
    hub.sessions["alice"].fail(SlowConsumer("slow"))
    chat.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(chat, 5)
    await _released(hub, "alice")


async def test_client_cancel_then_hub_abort_in_one_step_stay_cancelled(
    node_factory: NodeFactory,
) -> None:
    """grpc's cancel requested just before a hub abort (same step) still cancels Chat."""
    node = await node_factory()
    hub, chat, _ = await _stuck_chat(node)
    chat.cancel()
    hub.sessions["alice"].fail(SlowConsumer("slow"))
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(chat, 5)
    await _released(hub, "alice")


async def test_hub_abort_as_the_write_completes_ends_with_the_close_error(
    node_factory: NodeFactory,
) -> None:
    """An abort in the step where the stuck write completes still ends with the error."""
    node = await node_factory()
    hub, chat, context = await _stuck_chat(node)
    context.gate.set_result(None)  # the handler is now ready to run, not waiting
    hub.sessions["alice"].fail(SlowConsumer("slow"))
    with pytest.raises(SlowConsumer):
        await asyncio.wait_for(chat, 5)
    await _released(hub, "alice")


async def test_watchdog_ends_a_stuck_write_and_releases(node_factory: NodeFactory) -> None:
    """A write stuck past write_timeout_s ends Chat with SlowConsumer and frees the user."""
    node = await node_factory()
    hub, chat, _ = await _stuck_chat(node, write_timeout_s=0.2)
    with pytest.raises(SlowConsumer, match="took longer"):
        await asyncio.wait_for(chat, 5)
    await _released(hub, "alice")
