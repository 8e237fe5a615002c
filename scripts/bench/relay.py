"""The baseline: a bare grpc.aio ``Chat`` relay, Hubbub's transport minus everything else.

A minimal ``hubbub.v1.MessengerService/Chat`` that relays every ``send``
straight into the recipient's stream through an in-memory
:class:`asyncio.Queue` and answers the sender with an immediate
``send_result``. No storage, no auth (the bearer token *is* the username), no
limits, no presence. It builds the same protobuf events as Hubbub, so the wire
traffic is the same size. Run as its own process:
``python -m scripts.bench.relay [--host H] [--port P]`` prints ``listening on H:P``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from hubbub.v1 import messenger_pb2 as pb
from hubbub.v1 import messenger_pb2_grpc as pb_grpc

from .config import HOST
from .procstat import run_loop


def _timestamp_now() -> Timestamp:
    """The current time as a protobuf Timestamp (ms resolution, as Hubbub stores it)."""
    ts = Timestamp()
    ts.FromMilliseconds(time.time_ns() // 1_000_000)
    return ts


class RelayServicer(pb_grpc.MessengerServiceServicer):
    """Stack baseline: relays ``send`` events between Chat streams through memory.

    Per stream: a reader task turns client events into server events and a
    writer loop drains the stream's queue, the same shape as Hubbub's
    transport minus storage, auth, presence and limits. Queues are unbounded;
    the benchmark client's send window bounds them.
    """

    def __init__(self) -> None:
        """Empty relay: user → outbound queue, recipient → last sequence."""
        self.queues: dict[str, asyncio.Queue[pb.ChatResponse | None]] = {}
        self.sequences: dict[str, int] = {}
        self.next_message_id = 0

    async def Chat(  # type: ignore[override]
        self, request_iterator: AsyncIterator[pb.ChatRequest], context: Any
    ) -> None:
        """Relay this stream's sends; write whatever is queued for its user."""
        user = _bearer(context.invocation_metadata()) or "anonymous"
        queue: asyncio.Queue[pb.ChatResponse | None] = asyncio.Queue()
        self.queues[user] = queue
        queue.put_nowait(pb.ChatResponse(welcome=pb.Welcome(user=pb.User(username=user))))
        reader = asyncio.create_task(self._read(user, request_iterator, queue))
        try:
            while True:
                event = await queue.get()
                if event is None:
                    return
                await context.write(event)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            if self.queues.get(user) is queue:
                del self.queues[user]

    async def _read(
        self,
        user: str,
        requests: AsyncIterator[pb.ChatRequest],
        queue: asyncio.Queue[pb.ChatResponse | None],
    ) -> None:
        """Turn this stream's events into queued server events until it ends."""
        try:
            async for request in requests:
                kind = request.WhichOneof("event")
                if kind == "send":
                    self._relay(user, request.send, queue)
                elif kind == "ping":
                    queue.put_nowait(pb.ChatResponse(pong=pb.Pong(nonce=request.ping.nonce)))
                # resume and ack need no work: nothing is stored.
        finally:
            queue.put_nowait(None)  # half-close or broken call: end the writer

    def _relay(
        self, user: str, send: pb.SendMessage, queue: asyncio.Queue[pb.ChatResponse | None]
    ) -> None:
        """Queue the message for its recipient and an immediate send_result for the sender."""
        target = self.queues.get(send.recipient)
        if target is None:
            queue.put_nowait(
                pb.ChatResponse(
                    error=pb.Error(client_id=send.client_id, code=5, reason="USER_NOT_FOUND")
                )
            )
            return
        sequence = self.sequences.get(send.recipient, 0) + 1
        self.sequences[send.recipient] = sequence
        self.next_message_id += 1
        now = _timestamp_now()
        target.put_nowait(
            pb.ChatResponse(
                message=pb.Message(
                    sequence=sequence,
                    message_id=self.next_message_id,
                    sender=user,
                    sender_display_name=user,
                    recipient=send.recipient,
                    body=send.body,
                    send_time=now,
                    client_id=send.client_id,
                )
            )
        )
        queue.put_nowait(
            pb.ChatResponse(
                send_result=pb.SendResult(
                    client_id=send.client_id,
                    message_id=self.next_message_id,
                    sequence=sequence,
                    send_time=now,
                    recipient_online=True,
                    recipient=send.recipient,
                )
            )
        )


def _bearer(metadata: Any) -> str | None:
    """The token of an ``authorization: Bearer <token>`` metadata entry, if any."""
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            return value[len("Bearer ") :]
    return None


async def serve_baseline(port: int, host: str = HOST) -> None:
    """Run the relay on ``host``:``port`` until SIGTERM/SIGINT; prints ``listening on``."""
    server = grpc.aio.server()
    # Abstract for mypy: the relay serves only the RPCs the bench calls (Register, Login,
    # Chat); the base class answers the others UNIMPLEMENTED.
    relay = RelayServicer()  # type: ignore[abstract]
    pb_grpc.add_MessengerServiceServicer_to_server(relay, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    print(f"listening on {host}:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1.0)


def main(argv: list[str] | None = None) -> int:
    """``python -m scripts.bench.relay [--host H] [--port P]``: serve until SIGTERM; exit
    status 0."""
    parser = argparse.ArgumentParser(description="bench baseline relay")
    parser.add_argument("--host", default=HOST, help=f"address to bind ({HOST})")
    parser.add_argument("--port", type=int, default=0, help="TCP port, 0 = any")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        run_loop(serve_baseline(args.port, args.host))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
