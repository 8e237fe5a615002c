"""Client library side of batching and cumulative receipts, without a network: batch frames
unpacked into single events, queued requests written as one batch, Resume asking for
batching, and receipts exposing every message they cover."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from hubbub.client import Chat, DeliveryReceipt, IncomingMessage, SendConfirmed
from hubbub.client.chat import _Requests
from hubbub.client.events import event_from_pb
from hubbub.v1 import messenger_pb2 as pb

pytestmark = pytest.mark.timeout(10)

T0 = datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC)


class _ScriptedCall:
    """A Chat call that answers the given frames, then ends (EOF)."""

    def __init__(self, *frames: pb.ChatResponse) -> None:
        self.frames = list(frames)

    async def read(self) -> object:
        if self.frames:
            return self.frames.pop(0)
        return object()  # not a ChatResponse: the stream ended

    def cancel(self) -> None:
        self.frames.clear()


async def test_batch_frame_is_unpacked_into_single_events_in_order() -> None:
    """A ChatResponse.batch gives its events one by one, in order, as separate items."""
    batch = pb.ChatResponseBatch(
        events=[
            pb.ChatResponse(message=pb.Message(sequence=1, sender="alice", body="one")),
            pb.ChatResponse(send_result=pb.SendResult(client_id="c1", message_id=7)),
            pb.ChatResponse(message=pb.Message(sequence=2, sender="alice", body="two")),
        ]
    )
    outbox: asyncio.Queue[pb.ChatRequest | None] = asyncio.Queue()
    chat = Chat(_ScriptedCall(pb.ChatResponse(batch=batch)), outbox, "h:1")
    events = [event async for event in chat]
    assert [type(e) for e in events] == [IncomingMessage, SendConfirmed, IncomingMessage]
    first, result, second = events
    assert isinstance(first, IncomingMessage) and isinstance(second, IncomingMessage)
    assert (first.body, second.body) == ("one", "two")
    assert isinstance(result, SendConfirmed) and result.client_id == "c1"


async def test_resume_asks_for_batching() -> None:
    """Chat.resume sets Resume.batching, so the server may batch what it has queued."""
    outbox: asyncio.Queue[pb.ChatRequest | None] = asyncio.Queue()
    chat = Chat(_ScriptedCall(), outbox, "h:1")
    chat.resume(5, "h1")
    request = outbox.get_nowait()
    assert request is not None and request.resume.batching
    assert (request.resume.after_sequence, request.resume.history_id) == (5, "h1")
    await chat.wait_closed(1.0)


async def test_requests_queued_together_are_written_as_one_batch() -> None:
    """Sends and acks queued at the same moment come out of the request stream as ONE
    ChatRequest.batch, in order; one queued request alone is itself; None ends it."""
    outbox: asyncio.Queue[pb.ChatRequest | None] = asyncio.Queue()
    requests = _Requests(outbox)
    outbox.put_nowait(pb.ChatRequest(ack=pb.Ack(sequence=3)))
    assert (await anext(requests)).ack.sequence == 3
    sends = [pb.ChatRequest(send=pb.SendMessage(client_id=f"c{i}", body="x")) for i in range(3)]
    for request in [*sends, pb.ChatRequest(ack=pb.Ack(sequence=4))]:
        outbox.put_nowait(request)
    outbox.put_nowait(None)  # half-close after them
    frame = await anext(requests)
    assert [e.WhichOneof("event") for e in frame.batch.events] == ["send"] * 3 + ["ack"]
    assert [e.send.client_id for e in frame.batch.events[:3]] == ["c0", "c1", "c2"]
    with pytest.raises(StopAsyncIteration):
        await anext(requests)


def test_receipt_lists_every_covered_message() -> None:
    """A cumulative DeliveryReceipt exposes all covered message ids and client ids, oldest
    first; one without lists (an older server) covers its message_id alone."""
    cumulative = event_from_pb(
        pb.ChatResponse(
            delivery_receipt=pb.DeliveryReceipt(
                sequence=4,
                message_id=9,
                client_id="c9",
                recipient="bob",
                message_ids=[7, 8, 9],
                client_ids=["c7", "c8", "c9"],
            )
        )
    )
    assert isinstance(cumulative, DeliveryReceipt)
    assert cumulative.message_ids == (7, 8, 9) and cumulative.client_ids == ("c7", "c8", "c9")
    single = event_from_pb(
        pb.ChatResponse(
            delivery_receipt=pb.DeliveryReceipt(
                sequence=5, message_id=10, client_id="c10", recipient="bob"
            )
        )
    )
    assert isinstance(single, DeliveryReceipt)
    assert (single.message_ids, single.client_ids) == ((10,), ("c10",))
    built = DeliveryReceipt(3, 42, "c1", "bob", T0)  # built by hand: covers its message
    assert (built.message_ids, built.client_ids) == ((42,), ("c1",))
