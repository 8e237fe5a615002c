"""Inbox positions belong to one history (issue 9 item 3), and an inbox gap never stalls
delivery (issue 8 hole 8, the live part)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import grpc
import pytest

from hubbub.v1 import messenger_pb2 as pb

from .conftest import Chat, Node, auth, open_chat, register_login

pytestmark = pytest.mark.timeout(30)


async def _bob_with_messages(node: Node, n: int, acked: int) -> str:
    """bob's token after alice sent him ``n`` messages, of which he acknowledged ``acked``."""
    alice = await register_login(node, "alice")
    bob = await register_login(node, "bob")
    a = await open_chat(node, alice)
    for i in range(n):
        await a.send("bob", f"m{i + 1}", f"c{i}")
        await a.next("send_result")
    await a.close()
    if acked:
        b = await open_chat(node, bob)
        await b.messages(acked)
        await b.write(pb.ChatRequest(ack=pb.Ack(sequence=acked)))
        await b.next("synced")
        await b.close()
        store = node.server.store
        account = await store.get_account("bob")
        assert account is not None
        for _ in range(100):  # the ack is stored when the stream closes
            if (await store.cursor(account)).acked_sequence == acked:
                break
            await asyncio.sleep(0.02)
    return bob


async def _chat_with_resume(node: Node, token: str, resume: pb.Resume) -> tuple[Chat, pb.Welcome]:
    chat = Chat(node.stub.Chat(metadata=auth(token)))
    welcome = (await chat.next("welcome")).welcome
    await chat.write(pb.ChatRequest(resume=resume))
    return chat, welcome


async def test_welcome_carries_the_history_id_and_a_resume_token(node: Node) -> None:
    """Welcome names the store's history id and a fresh resume token for every stream."""
    token = await register_login(node, "alice")
    first, welcome1 = await _chat_with_resume(node, token, pb.Resume())
    assert welcome1.history_id == await node.server.store.history_id()
    assert len(welcome1.history_id) == 32
    await first.close()
    second = Chat(node.stub.Chat(metadata=auth(token)))
    for _ in range(50):
        try:
            welcome2 = (await second.next("welcome")).welcome
            break
        except grpc.aio.AioRpcError:  # ALREADY_EXISTS while the first stream closes
            await asyncio.sleep(0.05)
            second = Chat(node.stub.Chat(metadata=auth(token)))
    assert welcome2.history_id == welcome1.history_id
    assert welcome1.resume_token and welcome2.resume_token
    assert welcome1.resume_token != welcome2.resume_token
    await second.close()


async def test_resume_from_another_history_replays_from_the_acked_sequence(node: Node) -> None:
    """A Resume with a foreign history id gets FAILED_PRECONDITION HISTORY_CHANGED and the
    replay starts after the acknowledged sequence, not after the client's position."""
    bob = await _bob_with_messages(node, 5, acked=2)
    chat, _ = await _chat_with_resume(node, bob, pb.Resume(after_sequence=4, history_id="0" * 32))
    error = (await chat.next("error")).error
    assert (error.code, error.reason, error.retry) == (9, "HISTORY_CHANGED", False)
    msgs = await chat.messages(3)
    assert [m.sequence for m in msgs] == [3, 4, 5]
    assert (await chat.next("synced")).synced.last_sequence == 5
    await chat.close()


async def test_resume_beyond_the_end_replays_from_the_acked_sequence(node: Node) -> None:
    """after_sequence past the last stored one gets OUT_OF_RANGE RESUME_BEYOND_END and the
    replay starts after the acknowledged sequence, so later messages are not hidden."""
    bob = await _bob_with_messages(node, 3, acked=1)
    history = await node.server.store.history_id()
    chat, _ = await _chat_with_resume(node, bob, pb.Resume(after_sequence=7, history_id=history))
    error = (await chat.next("error")).error
    assert (error.code, error.reason, error.retry) == (11, "RESUME_BEYOND_END", False)
    msgs = await chat.messages(2)
    assert [m.sequence for m in msgs] == [2, 3]
    await chat.close()


async def test_resume_in_the_same_history_replays_after_the_position(node: Node) -> None:
    """The right history id and a valid position: replay after that position, no error."""
    bob = await _bob_with_messages(node, 4, acked=1)
    history = await node.server.store.history_id()
    chat, _ = await _chat_with_resume(node, bob, pb.Resume(after_sequence=3, history_id=history))
    (msg,) = await chat.messages(1)
    assert msg.sequence == 4
    await chat.next("synced")
    assert not [e for e in chat.seen if e.WhichOneof("event") == "error"]
    await chat.close()


async def test_an_inbox_gap_is_skipped_and_delivery_goes_on(node: Node, db_path: Path) -> None:
    """Entries 2-3 deleted and the inbox's last sequence set past the end (direct SQL): the
    stream delivers 1, 4, 5, says Synced, then delivers new messages live."""
    alice = await register_login(node, "alice")
    bob = await register_login(node, "bob")
    a = await open_chat(node, alice)
    for i in range(5):
        await a.send("bob", f"m{i + 1}", f"c{i}")
        await a.next("send_result")
    with sqlite3.connect(db_path) as conn:
        (bob_id,) = conn.execute("SELECT id FROM users WHERE username = 'bob'").fetchone()
        conn.execute("DELETE FROM inbox WHERE user_id = ? AND sequence IN (2, 3)", (bob_id,))
        conn.execute("UPDATE users SET last_sequence = 7 WHERE id = ?", (bob_id,))
    b = await open_chat(node, bob)
    assert [m.sequence for m in await b.messages(3)] == [1, 4, 5]
    await b.next("synced")
    await a.send("bob", "live", "live")
    assert (await a.next("send_result")).send_result.sequence == 8
    (live,) = await b.messages(1)
    assert (live.sequence, live.body) == (8, "live")
    session = node.server.hub.sessions["bob"]
    assert session.position.enqueued == 8
    await a.send("echobot", "still there?", "e1")
    (echo,) = await a.messages(1)
    assert echo.body == "still there?"
    await a.close()
    await b.close()
