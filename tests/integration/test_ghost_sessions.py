"""Streams cancelled at any point leave no ghost: presence, session and tasks are released."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import grpc
import pytest

from hubbub.server.auth import token_hash
from hubbub.server.groups import GroupService
from hubbub.server.grpc_interceptor import current_account, current_session
from hubbub.server.grpc_servicer import MessengerServicer
from hubbub.server.history import HistoryService
from hubbub.server.models import Account, AuthSession, utc_now
from hubbub.v1 import messenger_pb2 as pb

from .conftest import Node, auth, register_login

pytestmark = pytest.mark.timeout(120)

NodeFactory = Callable[..., Awaitable[Node]]
USERS = 16
BACKLOG = 120  # 2 kB messages per user: a replay past the outbox and the HTTP/2 window
CYCLES_PER_USER = 64  # 16 * 64 = 1,024 cancelled streams


async def set_caller(node: Node, account: Account) -> None:
    """Log ``account`` in (a stored session) and authenticate the current task as it, as
    the interceptor does."""
    digest = token_hash(f"token-of-{account.username}")
    expires = utc_now() + timedelta(hours=1)
    await node.server.store.create_session(digest, account.id, expires)
    current_account.set(account)
    current_session.set(AuthSession(digest, account, expires))


async def _fill_backlogs(node: Node, names: list[str]) -> None:
    """Store BACKLOG messages from a sender for each user straight into the store."""
    store = node.server.store
    sender = await store.get_account("sender")
    assert sender is not None
    now = utc_now()
    for name in names:
        account = await store.get_account(name)
        assert account is not None
        await asyncio.gather(
            *(
                store.store_message(sender, account, f"{name}-{i}", "x" * 2000, now)
                for i in range(BACKLOG)
            )
        )


async def _one_cycle(node: Node, token: str, rng: random.Random) -> None:
    """Open a Chat, do one of the risky things, then cancel after a random delay."""
    call = node.stub.Chat(metadata=auth(token))
    scenario = rng.randrange(4)
    delay = rng.uniform(0, 0.02)
    try:
        if scenario == 0:  # cancel during the welcome (before reading anything)
            await asyncio.sleep(delay / 4)
        elif scenario == 1:  # half-close during a large replay, then cancel
            await call.write(pb.ChatRequest(resume=pb.Resume(after_sequence=0)))
            await call.done_writing()
            await asyncio.sleep(delay)
        elif scenario == 2:  # a send to echobot (its answer is pending), half-close, cancel
            await call.write(pb.ChatRequest(resume=pb.Resume(after_sequence=0)))
            await call.write(
                pb.ChatRequest(
                    send=pb.SendMessage(
                        client_id=f"e{rng.random()}", recipient="echobot", body="echo"
                    )
                )
            )
            await call.done_writing()
            await asyncio.sleep(delay)
        else:  # cancel during a send's commit, with the replay going on
            await call.write(pb.ChatRequest(resume=pb.Resume(after_sequence=0)))
            await call.write(
                pb.ChatRequest(
                    send=pb.SendMessage(client_id=f"s{rng.random()}", recipient="sender", body="s")
                )
            )
            await asyncio.sleep(delay)
    except grpc.aio.AioRpcError:
        pass  # e.g. ALREADY_EXISTS while the previous stream of this user is being closed
    finally:
        call.cancel()


def _grpc_accept_loop(task: asyncio.Task[object]) -> bool:
    """The grpc.aio server's task that waits for the next call (always one pending)."""
    return "_request_registered_call" in repr(task)


async def _user_cycles(node: Node, token: str, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(CYCLES_PER_USER):
        await _one_cycle(node, token, rng)


async def test_cancelled_streams_leave_no_ghost_session(node_factory: NodeFactory) -> None:
    """Over 1,024 streams cancelled at random points (welcome, replay after half-close, a
    send's commit, echobot pending) no user stays online or locked, ``hub.sessions`` ends
    empty and no task is left behind."""
    node = await node_factory(outbox_events=16, outbox_bytes=64 * 1024)
    await register_login(node, "sender")
    names = [f"user{i}" for i in range(USERS)]
    tokens = [await register_login(node, name) for name in names]
    await _fill_backlogs(node, names)
    hub = node.server.hub
    warm = node.stub.Chat(metadata=auth(tokens[0]))  # the channel's own tasks start here
    await asyncio.wait_for(warm.read(), 5)
    warm.cancel()
    await _wait_until(lambda: not hub.sessions, "the warm-up stream stayed")
    before = set(asyncio.all_tasks())
    started = time.monotonic()
    await asyncio.gather(*(_user_cycles(node, token, seed) for seed, token in enumerate(tokens)))
    deadline = time.monotonic() + 10
    while hub.sessions or await hub.presence.online():
        assert time.monotonic() < deadline, (
            f"ghost sessions: {sorted(hub.sessions)}, online: {sorted(await hub.presence.online())}"
        )
        await asyncio.sleep(0.05)
    for token in tokens:  # nobody is locked out: a new Chat is welcomed
        call = node.stub.Chat(metadata=auth(token))
        first = await asyncio.wait_for(call.read(), 5)
        assert first.WhichOneof("event") == "welcome"
        call.cancel()
    deadline = time.monotonic() + 10
    while True:
        left = [
            t
            for t in asyncio.all_tasks() - before
            if not t.done() and t is not asyncio.current_task() and not _grpc_accept_loop(t)
        ]
        if not left:
            break
        assert time.monotonic() < deadline, f"tasks left behind: {left}"
        await asyncio.sleep(0.05)
    assert not hub.sessions
    assert time.monotonic() - started < 90


async def _wait_until(condition: Callable[[], bool], what: str, wait_s: float = 5.0) -> None:
    deadline = time.monotonic() + wait_s
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


async def test_cancel_as_the_bots_go_idle_is_not_lost(node_factory: NodeFactory) -> None:
    """A cancellation that arrives in the loop step where echobot's queue empties still
    cancels ``Hub.finish`` (asyncio.wait_for on 3.11 swallowed it: the known ghost trace)."""
    node = await node_factory()
    hub = node.server.hub
    store = node.server.store
    alice = await store.create_account("alice", "Alice", "!")
    session = await hub.open_session(alice)
    assert hub.bots.task is not None
    hub.bots.task.cancel()  # the test plays echobot: one answer is in progress
    with contextlib.suppress(asyncio.CancelledError):
        await hub.bots.task
    hub.bots.queue.put_nowait(object())  # type: ignore[arg-type]
    finish = asyncio.create_task(hub.finish(session))
    await asyncio.sleep(0.05)  # finish now waits for the bots to go idle
    assert not finish.done()
    hub.bots.queue.get_nowait()
    hub.bots.queue.task_done()  # the bot goes idle ...
    finish.cancel()  # ... and the stream is cancelled in the same loop step
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(finish, 5)
    await hub.close_session(session)


async def test_second_cancel_during_cleanup_still_releases_the_session(
    node_factory: NodeFactory,
) -> None:
    """A Chat handler cancelled again while it cleans up (e.g. client cancel, then server
    stop) still releases presence and the session: cleanup runs shielded to the end."""
    node = await node_factory(outbox_events=4)
    hub = node.server.hub
    store = node.server.store
    alice = await store.create_account("alice", "Alice", "!")
    bob = await store.create_account("bob", "Bob", "!")
    now = utc_now()
    await asyncio.gather(*(store.store_message(bob, alice, f"b{i}", "x", now) for i in range(50)))
    servicer = MessengerServicer(node.server.auth, hub, GroupService(hub), HistoryService(hub))

    class StuckContext:
        """A client that never reads: every write after the first blocks (flow control)."""

        writes = 0

        def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
            return ()

        async def write(self, message: object) -> None:
            self.writes += 1
            if self.writes > 1:
                await asyncio.Event().wait()

    async def requests() -> AsyncIterator[pb.ChatRequest]:
        yield pb.ChatRequest(resume=pb.Resume(after_sequence=0))  # then half-close

    await set_caller(node, alice)
    chat = asyncio.create_task(servicer.Chat(requests(), StuckContext()))  # type: ignore[arg-type]
    await _wait_until(lambda: "alice" in hub.sessions, "alice never connected")
    await asyncio.sleep(0.1)  # replay blocked on the full outbox, writer blocked
    chat.cancel()
    await asyncio.sleep(0)  # the handler is now in its cleanup
    chat.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(chat, 5)
    await _wait_until(lambda: "alice" not in hub.sessions, "alice stayed in hub.sessions")
    deadline = time.monotonic() + 5
    while await hub.presence.is_online("alice"):
        assert time.monotonic() < deadline, "alice stayed online"
        await asyncio.sleep(0.01)
