"""Batching on the Chat stream (Resume.batching, ChatResponse.batch, ChatRequest.batch) and
cumulative delivery receipts, through the real server's gRPC API."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from hubbub.v1 import messenger_pb2 as pb

from .conftest import Node, auth, register_login

pytestmark = pytest.mark.timeout(30)


async def frames_until_synced(call: Any) -> list[pb.ChatResponse]:
    """Read raw frames (not unpacked) until one that is or holds a Synced event."""
    frames: list[pb.ChatResponse] = []
    while True:
        frame = await asyncio.wait_for(call.read(), 5)
        assert isinstance(frame, pb.ChatResponse), "stream ended"  # not grpc.aio.EOF
        frames.append(frame)
        inner = frame.batch.events if frame.WhichOneof("event") == "batch" else [frame]
        if any(e.WhichOneof("event") == "synced" for e in inner):
            return frames


async def receipts_within(call: Any, wait_s: float) -> list[pb.DeliveryReceipt]:
    """The delivery receipts ``call`` reads within ``wait_s`` seconds."""
    found: list[pb.DeliveryReceipt] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + wait_s
    while (left := end - loop.time()) > 0:
        try:
            frame = await asyncio.wait_for(call.read(), left)
        except TimeoutError:
            break
        found += [e.delivery_receipt for e in unpack([frame]) if e.HasField("delivery_receipt")]
    return found


def unpack(frames: list[pb.ChatResponse]) -> list[pb.ChatResponse]:
    """The events of ``frames`` in order, batches opened."""
    return [
        e for f in frames for e in (f.batch.events if f.WhichOneof("event") == "batch" else [f])
    ]


async def queue_for_offline(node: Node, n: int) -> str:
    """bob sends ``n`` messages to alice while she is offline; returns alice's token."""
    alice = await register_login(node, "alice")
    bob = await register_login(node, "bob")
    for i in range(n):
        await node.stub.SendMessage(
            pb.SendMessageRequest(recipient="alice", body=f"m{i}", client_id=f"b{i}"),
            metadata=auth(bob),
        )
    return alice


async def test_batching_stream_gets_queued_events_in_one_frame_in_order(node: Node) -> None:
    """After Resume{batching}, the replay queued at once arrives in batch frames, in order."""
    alice = await queue_for_offline(node, 20)
    call: Any = node.stub.Chat(None, metadata=auth(alice))
    welcome = await asyncio.wait_for(call.read(), 5)
    assert welcome.WhichOneof("event") == "welcome"
    await call.write(pb.ChatRequest(resume=pb.Resume(batching=True)))
    frames = await frames_until_synced(call)
    assert any(len(f.batch.events) > 1 for f in frames)
    assert len(frames) < 21
    events = unpack(frames)
    assert [e.WhichOneof("event") for e in events] == ["message"] * 20 + ["synced"]
    assert [e.message.sequence for e in events[:20]] == list(range(1, 21))
    assert [e.message.body for e in events[:20]] == [f"m{i}" for i in range(20)]
    assert all(e.WhichOneof("event") != "batch" for e in events)
    call.cancel()


async def test_stream_without_batching_gets_one_event_per_frame(node: Node) -> None:
    """A client that never sets Resume.batching (grpcurl-like) never sees a batch frame."""
    alice = await queue_for_offline(node, 20)
    call: Any = node.stub.Chat(None, metadata=auth(alice))
    await asyncio.wait_for(call.read(), 5)
    await call.write(pb.ChatRequest(resume=pb.Resume()))
    frames = await frames_until_synced(call)
    assert [f.WhichOneof("event") for f in frames] == ["message"] * 20 + ["synced"]
    call.cancel()


async def test_request_batch_is_handled_in_order_with_one_request_index_each(
    node: Node,
) -> None:
    """Each event of a ChatRequest.batch counts as one request: results and errors in order,
    request_index counting the inner events (the batch itself does not count)."""
    alice = await register_login(node, "alice")
    await register_login(node, "bob")
    call: Any = node.stub.Chat(None, metadata=auth(alice))
    await asyncio.wait_for(call.read(), 5)
    await call.write(pb.ChatRequest(resume=pb.Resume()))  # request 1
    sends = [
        pb.ChatRequest(send=pb.SendMessage(client_id="s1", recipient="bob", body="one")),
        pb.ChatRequest(send=pb.SendMessage(client_id="s2", recipient="nobody", body="x")),
        pb.ChatRequest(send=pb.SendMessage(client_id="s3", recipient="bob", body="three")),
        pb.ChatRequest(ack=pb.Ack(sequence=99)),
    ]
    await call.write(pb.ChatRequest(batch=pb.ChatRequestBatch(events=sends)))  # requests 2-5
    await call.write(pb.ChatRequest(ping=pb.Ping(nonce=7)))  # request 6
    answers: list[pb.ChatResponse] = []
    while len(answers) < 5:  # 2 send results, 2 errors, 1 pong
        frame = await asyncio.wait_for(call.read(), 5)
        assert frame.WhichOneof("event") != "batch"  # this stream did not ask for batching
        if frame.WhichOneof("event") in ("send_result", "error", "pong"):
            answers.append(frame)
    assert [a.pong.nonce for a in answers if a.HasField("pong")] == [7]
    errors = [(a.error.request_index, a.error.client_id) for a in answers if a.HasField("error")]
    assert errors == [(3, "s2"), (5, "")]
    results = [a.send_result for a in answers if a.HasField("send_result")]
    assert [(r.client_id, r.sequence) for r in results] == [("s1", 1), ("s3", 2)]
    call.cancel()


async def test_nested_batch_is_refused_and_the_rest_is_handled(node: Node) -> None:
    """A batch inside a batch is an Error (INVALID_ARGUMENT, field batch.events) with its
    own request index; the events around it are handled and the stream stays open."""
    alice = await register_login(node, "alice")
    call: Any = node.stub.Chat(None, metadata=auth(alice))
    await asyncio.wait_for(call.read(), 5)
    inner = pb.ChatRequest(
        batch=pb.ChatRequestBatch(events=[pb.ChatRequest(ping=pb.Ping(nonce=2))])
    )
    events = [
        pb.ChatRequest(resume=pb.Resume(batching=True)),
        pb.ChatRequest(ping=pb.Ping(nonce=1)),
        inner,
        pb.ChatRequest(ping=pb.Ping(nonce=3)),
    ]
    await call.write(pb.ChatRequest(batch=pb.ChatRequestBatch(events=events)))
    seen: list[pb.ChatResponse] = []
    while [e.pong.nonce for e in seen if e.HasField("pong")] != [1, 3]:
        seen += unpack([await asyncio.wait_for(call.read(), 5)])
    (error,) = [e.error for e in seen if e.HasField("error")]
    assert (error.code, error.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT.value[0],
        "EVENT_MALFORMED",
    )
    assert error.request_index == 3
    assert [v.field for v in error.field_violations] == ["batch.events"]
    order = [e.WhichOneof("event") for e in seen if e.WhichOneof("event") in ("pong", "error")]
    assert order == ["pong", "error", "pong"]
    call.cancel()


async def test_one_ack_over_many_messages_gives_one_receipt_on_the_wire(node: Node) -> None:
    """bob's single ack over 4 of alice's messages gives alice ONE DeliveryReceipt listing all
    4 (message_ids and client_ids, oldest first; message_id/client_id = the last)."""
    alice = await register_login(node, "alice")
    bob = await register_login(node, "bob")
    a: Any = node.stub.Chat(None, metadata=auth(alice))
    await asyncio.wait_for(a.read(), 5)
    await a.write(pb.ChatRequest(resume=pb.Resume(batching=True)))
    results = []
    for i in range(4):
        reply = await node.stub.SendMessage(
            pb.SendMessageRequest(recipient="bob", body=f"m{i}", client_id=f"a{i}"),
            metadata=auth(alice),
        )
        results.append(reply.result)
    b: Any = node.stub.Chat(None, metadata=auth(bob))
    await asyncio.wait_for(b.read(), 5)
    await b.write(pb.ChatRequest(resume=pb.Resume()))
    received = [e for e in unpack(await frames_until_synced(b)) if e.HasField("message")]
    assert len(received) == 4
    await b.write(pb.ChatRequest(ack=pb.Ack(sequence=received[-1].message.sequence)))
    receipts: list[pb.DeliveryReceipt] = []
    while not receipts:
        for e in unpack([await asyncio.wait_for(a.read(), 5)]):
            if e.HasField("delivery_receipt"):
                receipts.append(e.delivery_receipt)
    (receipt,) = receipts
    assert list(receipt.message_ids) == [r.message_id for r in results]
    assert list(receipt.client_ids) == ["a0", "a1", "a2", "a3"]
    assert (receipt.message_id, receipt.client_id, receipt.recipient) == (
        results[-1].message_id,
        "a3",
        "bob",
    )
    assert not await receipts_within(a, 0.5)  # and no second receipt
    a.cancel()
    b.cancel()
