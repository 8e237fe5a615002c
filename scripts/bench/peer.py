"""One benchmark user: its own channel and Chat stream, a reader task and a send window."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from typing import Any

import grpc

from hubbub.v1 import messenger_pb2 as pb
from hubbub.v1 import messenger_pb2_grpc as pb_grpc

from .config import EVENT_TIMEOUT_S, INBOX_KINDS
from .tracker import Tracker


class Peer:
    """One user: its own channel and Chat stream, a reader task and a send window."""

    def __init__(
        self,
        name: str,
        token: str,
        address: str,
        tracker: Tracker,
        ack_every: int,
        *,
        channel: grpc.aio.Channel | None = None,
        on_message: Callable[[Peer, pb.Message, int], None] | None = None,
        batching: bool = False,
        presence: bool = True,
    ) -> None:
        """A peer for user ``name`` (bearer ``token``) on ``address``; acks every
        ``ack_every`` inbox entries.

        Args:
            channel: a channel shared with other peers (kept open by :meth:`close`);
                None = this peer opens and closes its own.
            on_message: called with (peer, message, arrival ns) for every message event
                instead of the tracker (fan-out phases, where one send has many recipients).
            batching: negotiate batching as the client library does (Hubbub only, not the
                relay): Resume.batching, and the sends and acks queued while a write is
                under way go out as one ChatRequest.batch frame.
            presence: False: open the stream with ``hubbub-presence: off`` (no presence
                events, as a bot would).
        """
        self.name = name
        self.token = token
        self.address = address
        self.tracker = tracker
        self.ack_every = ack_every
        self.shared_channel = channel
        self.on_message = on_message
        self.metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),)
        if not presence:
            self.metadata += (("hubbub-presence", "off"),)
        self.channel: grpc.aio.Channel | None = channel
        self.call: Any = None
        self.reader: asyncio.Task[None] | None = None
        self.write_lock = asyncio.Lock()
        self.window: asyncio.Semaphore = asyncio.Semaphore(1)
        self.last_sequence = 0
        self.acked_sequence = 0
        self.last_order_sequence = 0
        self.batching = batching
        self._queued: list[pb.ChatRequest] = []
        self._flusher: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        """Open the channel and the Chat stream, read Welcome, send Resume, start reading."""
        if self.channel is None:
            self.channel = grpc.aio.insecure_channel(self.address)
        stub = pb_grpc.MessengerServiceStub(self.channel)
        self.call = stub.Chat(None, metadata=self.metadata)
        first = await asyncio.wait_for(self.call.read(), EVENT_TIMEOUT_S)
        if not isinstance(first, pb.ChatResponse) or first.WhichOneof("event") != "welcome":
            raise RuntimeError(f"{self.name}: expected welcome, got {first!r}")
        self.last_sequence = self.acked_sequence = first.welcome.acked_sequence
        await self.write(pb.ChatRequest(resume=pb.Resume(batching=self.batching)))
        self.reader = asyncio.create_task(self._read_loop(), name=f"reader-{self.name}")

    async def write(self, request: pb.ChatRequest) -> None:
        """Write one event (writes on one call are serialised); with batching, queue it
        for the next frame instead (:meth:`_queue`)."""
        if self.batching:
            self._queue(request)
            return
        async with self.write_lock:
            await self.call.write(request)

    async def send(self, recipient: str, client_id: str, body: str) -> None:
        """Write a send event and note its send time."""
        request = pb.ChatRequest(
            send=pb.SendMessage(client_id=client_id, recipient=recipient, body=body)
        )
        if self.batching:
            self.tracker.on_send(client_id, recipient, body, time.perf_counter_ns())
            self._queue(request)
            return
        async with self.write_lock:
            self.tracker.on_send(client_id, recipient, body, time.perf_counter_ns())
            await self.call.write(request)

    def _queue(self, request: pb.ChatRequest) -> None:
        """Queue ``request``; one flusher task writes everything queued meanwhile as one
        frame (a ChatRequest.batch when more than one), never waiting to fill it."""
        self._queued.append(request)
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name=f"flush-{self.name}")

    async def _flush(self) -> None:
        """Write the queued requests until none is left; a broken call is left to the reader."""
        try:
            async with self.write_lock:
                while self._queued:
                    queued, self._queued = self._queued, []
                    if len(queued) == 1:
                        await self.call.write(queued[0])
                    else:
                        batch = pb.ChatRequestBatch(events=queued)
                        await self.call.write(pb.ChatRequest(batch=batch))
        except Exception:
            self._queued.clear()  # the stream broke: the reader counts it
        finally:
            self._flusher = None

    async def flush(self) -> None:
        """Wait until every queued request is written (no-op without batching)."""
        while self._flusher is not None:
            await asyncio.shield(self._flusher)

    async def _read_loop(self) -> None:
        """Read events until EOF; a broken stream is counted and ends the phase early."""
        try:
            await self._dispatch_events()
        except grpc.aio.AioRpcError as exc:
            self.tracker.integrity.broken_streams += 1
            self.tracker.phase_done.set()  # messages will be missing: stop waiting for them
            print(
                f"bench: stream of {self.name} broke: {exc.code().name} {exc.details()}",
                file=sys.stderr,
            )

    async def _dispatch_events(self) -> None:
        """Route each event (those of a batch frame one by one) to the tracker; ack inbox
        entries cumulatively."""
        while True:
            frame = await self.call.read()
            now = time.perf_counter_ns()
            if not isinstance(frame, pb.ChatResponse):  # grpc.aio.EOF: the stream ended
                return
            if frame.WhichOneof("event") == "batch":
                for event in frame.batch.events:
                    await self._dispatch(event, now)
            else:
                await self._dispatch(frame, now)

    async def _dispatch(self, event: pb.ChatResponse, now: int) -> None:
        """Route one event read at ``now`` (perf_counter ns)."""
        tracker = self.tracker
        kind = event.WhichOneof("event")
        if kind in INBOX_KINDS:  # an inbox entry: check its sequence, ack cumulatively
            entry = getattr(event, kind)
            if kind == "message" and self.on_message is not None:
                self.on_message(self, entry, now)
            elif kind == "message":
                tracker.on_message(self.name, entry.client_id, entry.body, now)
            elif kind == "delivery_receipt":  # cumulative: one per covered message
                tracker.integrity.receipts += max(1, len(entry.message_ids))
            if self.last_order_sequence and entry.sequence != self.last_order_sequence + 1:
                tracker.integrity.out_of_order += 1
            self.last_order_sequence = entry.sequence
            self.last_sequence = max(self.last_sequence, entry.sequence)
            if self.last_sequence - self.acked_sequence >= self.ack_every:
                await self.ack()
        elif kind == "send_result":
            tracker.on_result(event.send_result.client_id, now)
            self.window.release()
        elif kind == "error":
            tracker.on_result(event.error.client_id, now, error=True)
            if event.error.client_id:
                self.window.release()

    async def ack(self) -> None:
        """Acknowledge cumulatively everything received so far."""
        if self.last_sequence > self.acked_sequence:
            self.acked_sequence = self.last_sequence
            await self.write(pb.ChatRequest(ack=pb.Ack(sequence=self.acked_sequence)))

    async def close(self) -> None:
        """Final ack, half-close, wait (bounded) for the server to end the call, close."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ack(), EVENT_TIMEOUT_S)
            await asyncio.wait_for(self.flush(), EVENT_TIMEOUT_S)
            async with self.write_lock:
                await asyncio.wait_for(self.call.done_writing(), EVENT_TIMEOUT_S)
        if self.reader is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self.reader), 2.0)
            self.reader.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self.reader
        if self.call is not None:
            self.call.cancel()
        if self.channel is not None and self.shared_channel is None:
            await self.channel.close(None)


def make_body(client_id: str, size: int) -> str:
    """A deterministic ASCII body of ``size`` bytes that embeds ``client_id``."""
    head = client_id + "|"
    return (head + "x" * max(0, size - len(head)))[: max(size, 1)]
