"""Presence under a burst of connects and disconnects: every stream ends with the true
online list, and a small outbox never drops a stream that reads."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

import grpc
import pytest

from hubbub.server.auth import token_hash
from hubbub.server.models import utc_now
from hubbub.v1 import messenger_pb2 as pb

from .conftest import Node, auth

pytestmark = pytest.mark.timeout(120)

USERS = 24
SETTLE_S = 20.0  # longest wait for every stream to reach the expected online list


class Watcher:
    """One user's Chat stream and the online list it has built: Welcome, then presence."""

    def __init__(self, node: Node, token: str) -> None:
        self.call = node.stub.Chat(None, metadata=auth(token))
        self.online: set[str] = set()
        self.presence_events = 0
        self.error: grpc.aio.AioRpcError | None = None
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        """Apply every event to the online list until the stream ends."""
        try:
            async for event in self.call:
                kind = event.WhichOneof("event")
                if kind == "welcome":
                    self.online = {u.username for u in event.welcome.online_users}
                    await self.call.write(pb.ChatRequest(resume=pb.Resume()))
                elif kind == "presence_change":
                    self.presence_events += 1
                    user = event.presence_change.user
                    if user.presence == pb.PRESENCE_ONLINE:
                        self.online.add(user.username)
                    else:
                        self.online.discard(user.username)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                self.error = exc

    async def close(self) -> None:
        """Cancel the stream and wait for the reader."""
        self.call.cancel()
        await asyncio.gather(self.reader, return_exceptions=True)


async def logged_in(node: Node, name: str) -> str:
    """Create ``name`` with a session straight in the store (no argon2: many users);
    its session token."""
    account = await node.server.store.create_account(name, name.upper(), "!")
    token = f"token-of-{name}"
    await node.server.store.create_session(
        token_hash(token), account.id, utc_now() + timedelta(hours=1)
    )
    return token


async def until(check: Callable[[], bool], what: str) -> None:
    """Wait (≤ SETTLE_S s) until ``check()`` holds."""
    deadline = time.monotonic() + SETTLE_S
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_a_burst_of_connects_and_disconnects_leaves_every_stream_right(
    node_factory: Callable[..., Awaitable[Node]],
) -> None:
    """24 streams open at once on a server whose outboxes hold 2 events, then 8 close:
    no stream is dropped, each ends with exactly the online users, and each got at most
    one presence event per other user and change."""
    node = await node_factory(outbox_events=2)
    names = [f"p{i:02}" for i in range(USERS)]
    tokens = [await logged_in(node, n) for n in names]
    watchers = [Watcher(node, t) for t in tokens]
    everyone = set(names) | {"echobot"}
    await until(
        lambda: all(w.online == everyone or w.reader.done() for w in watchers),
        "online lists after connects",
    )
    assert [w.error for w in watchers] == [None] * USERS
    leaving, staying = watchers[:8], watchers[8:]
    await asyncio.gather(*(w.close() for w in leaving))
    remaining = set(names[8:]) | {"echobot"}
    await until(lambda: all(w.online == remaining for w in staying), "online lists after closes")
    assert [w.error for w in watchers] == [None] * USERS
    assert all(w.presence_events <= 2 * (USERS - 1) for w in staying)
    await asyncio.gather(*(w.close() for w in staying))


async def test_a_stream_may_opt_out_of_presence_events(
    node_factory: Callable[..., Awaitable[Node]],
) -> None:
    """With ``hubbub-presence: off`` a stream gets the online list in Welcome and its
    messages, but no presence events; any value but on/off is refused."""
    node = await node_factory()
    bot_token, alice_token, bob_token = [await logged_in(node, n) for n in ("bot", "alice", "bob")]
    quiet = node.stub.Chat(None, metadata=(*auth(bot_token), ("hubbub-presence", "off")))
    welcome = await asyncio.wait_for(quiet.read(), 5)
    assert isinstance(welcome, pb.ChatResponse)  # not grpc.aio.EOF
    await quiet.write(pb.ChatRequest(resume=pb.Resume()))
    watcher = Watcher(node, alice_token)
    await until(lambda: watcher.online == {"alice", "bot", "echobot"}, "alice sees the bot")
    assert [u.username for u in welcome.welcome.online_users] == ["bot", "echobot"]
    bob = Watcher(node, bob_token)
    await until(lambda: "bob" in watcher.online, "alice sees bob")
    await bob.close()
    await until(lambda: "bob" not in watcher.online, "alice sees bob leave")
    await quiet.write(
        pb.ChatRequest(send=pb.SendMessage(client_id="e1", recipient="echobot", body="hi"))
    )
    kinds: list[str | None] = []
    while "message" not in kinds:
        event = await asyncio.wait_for(quiet.read(), 5)
        assert isinstance(event, pb.ChatResponse), "the stream ended"  # not grpc.aio.EOF
        kinds.append(event.WhichOneof("event"))
    assert "presence_change" not in kinds
    quiet.cancel()
    await watcher.close()
    refused = node.stub.Chat(None, metadata=(*auth(bob_token), ("hubbub-presence", "maybe")))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await refused.read()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
