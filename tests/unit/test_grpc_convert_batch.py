"""Batch frames of the Chat writer: one event alone, a run as one batch, split by bytes."""

from __future__ import annotations

from hubbub.server import grpc_convert as convert
from hubbub.server.events import InAck, InMalformed, InPing, OutPong, OutSynced
from hubbub.v1 import messenger_pb2 as pb


def test_one_event_is_written_as_itself() -> None:
    """A single queued event is one plain frame, never a batch of one."""
    (frame,) = convert.server_frames([OutPong(1)])
    assert frame == pb.ChatResponse(pong=pb.Pong(nonce=1))


def test_queued_events_become_one_batch_in_order() -> None:
    """Several queued events become one ChatResponse.batch holding them in order."""
    (frame,) = convert.server_frames([OutPong(1), OutPong(2), OutSynced(5)])
    assert [e.WhichOneof("event") for e in frame.batch.events] == ["pong", "pong", "synced"]
    assert [e.pong.nonce for e in frame.batch.events[:2]] == [1, 2]


def test_a_batch_is_split_when_its_events_pass_the_byte_bound() -> None:
    """Runs are cut so each frame's events add up to at most max_bytes; a lone leftover is
    written as itself."""
    size = pb.ChatResponse(pong=pb.Pong(nonce=1)).ByteSize()
    frames = convert.server_frames([OutPong(n) for n in range(1, 6)], max_bytes=2 * size)
    assert [len(f.batch.events) for f in frames[:2]] == [2, 2]
    assert frames[2] == pb.ChatResponse(pong=pb.Pong(nonce=5))


def test_request_batch_decodes_each_event_and_refuses_a_nested_batch() -> None:
    """ChatRequest.batch gives its events in order; a batch inside is InMalformed
    (field batch.events)."""
    nested = pb.ChatRequest(batch=pb.ChatRequestBatch(events=[pb.ChatRequest(ping=pb.Ping())]))
    request = pb.ChatRequest(
        batch=pb.ChatRequestBatch(
            events=[pb.ChatRequest(ack=pb.Ack(sequence=3)), nested, pb.ChatRequest(ping=pb.Ping())]
        )
    )
    ack, refused, ping = convert.client_events(request)
    assert ack == InAck(3) and ping == InPing(0)
    assert isinstance(refused, InMalformed)
    assert [v.field for v in refused.error.violations] == ["batch.events"]
    assert convert.client_events(pb.ChatRequest(ping=pb.Ping(nonce=4))) == [InPing(4)]
