"""One live `Chat` stream: queued writes, and its server events as an async iterator."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass
from typing import Any, Self

import grpc

from hubbub.v1 import messenger_pb2 as pb

from .errors import ErrorKind, HubbubError, _error_from_rpc, unreachable
from .events import ChatEvent, Welcome, event_from_pb


def new_client_id() -> str:
    """A fresh random client id for a SendMessage (32 hex characters)."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class _End:
    error: HubbubError | None


class _Requests:
    """The request stream of a Chat call: queued events until None (half-close).

    A plain async iterator rather than an async generator, so that grpc cancelling
    its consumer task never leaves a half-finished generator to be finalised.
    """

    def __init__(self, outbox: asyncio.Queue[pb.ChatRequest | None]) -> None:
        self._outbox = outbox
        self._done = False

    def __aiter__(self) -> _Requests:
        return self

    async def __anext__(self) -> pb.ChatRequest:
        if self._done:
            raise StopAsyncIteration
        item = await self._outbox.get()
        if item is None:
            self._done = True
            raise StopAsyncIteration
        return item


class Chat:
    """One live Chat stream. Create it with `Client.open_chat()`.

    Writing (`resume`, `send`, `ack`, `ping`) only queues the event, so it never
    blocks; one reader task turns server events into dataclasses that
    `async for event in chat` yields. Iteration ends when the server ends the
    stream normally and raises HubbubError if the stream fails (for example
    ErrorKind.UNAVAILABLE when the connection drops).
    """

    def __init__(self, call: Any, outbox: asyncio.Queue[pb.ChatRequest | None], address: str):
        self._call = call
        self._outbox = outbox
        self._address = address
        self._events: asyncio.Queue[ChatEvent | _End] = asyncio.Queue()
        self._ended: _End | None = None
        self._write_closed = False
        self._reader = asyncio.create_task(self._read_loop())
        self.welcome: Welcome | None = None

    async def _read_loop(self) -> None:
        end = _End(None)
        try:
            while True:
                resp = await self._call.read()
                if not isinstance(resp, pb.ChatResponse):  # grpc.aio.EOF: the stream ended
                    break
                event = event_from_pb(resp)
                if event is not None:
                    self._events.put_nowait(event)
        except grpc.RpcError as exc:
            end = _End(_error_from_rpc(exc, self._address))
        except asyncio.CancelledError:
            end = _End(HubbubError(ErrorKind.CANCELLED, "The chat was closed."))
        except Exception as exc:  # never let a broken stream escape as a traceback
            end = _End(HubbubError(ErrorKind.OTHER, f"The chat stream failed: {exc}."))
        # Let the request stream finish too, so grpc's sending task ends cleanly.
        if not self._write_closed:
            self._write_closed = True
            self._outbox.put_nowait(None)
        self._events.put_nowait(end)

    async def _first_event(self, within: float) -> Welcome:
        try:
            item = await asyncio.wait_for(self._events.get(), within)
        except TimeoutError:
            self.cancel()
            raise HubbubError(ErrorKind.UNAVAILABLE, unreachable(self._address)) from None
        if isinstance(item, _End):
            self._ended = item
            raise item.error or HubbubError(ErrorKind.OTHER, "The server closed the chat at once.")
        if not isinstance(item, Welcome):
            self.cancel()
            raise HubbubError(ErrorKind.INTERNAL, "The server did not greet the chat.")
        self.welcome = item
        return item

    def _put(self, request: pb.ChatRequest) -> None:
        if not self._write_closed:
            self._outbox.put_nowait(request)

    def resume(self, after_sequence: int | None = None, history_id: str = "") -> None:
        """Start delivery after inbox sequence `after_sequence` (None: the server's cursor).

        `history_id` is the Welcome.history_id that `after_sequence` belongs to ("" if
        unknown); a server with another history answers HISTORY_CHANGED and replays from
        the acknowledged sequence.
        """
        resume = pb.Resume(history_id=history_id)
        if after_sequence is not None:
            resume.after_sequence = after_sequence
        self._put(pb.ChatRequest(resume=resume))

    def send(
        self,
        recipient: str,
        body: str,
        client_id: str | None = None,
        *,
        group: str = "",
        random_recipient: bool = False,
    ) -> str:
        """Queue a message to `recipient`, or to `group` if set, or, if `random_recipient`,
        to one online user the server picks (SendConfirmed.recipient names them).

        Returns its client id (a new one if not given).
        """
        cid = client_id or new_client_id()
        message = pb.SendMessage(client_id=cid, body=body)
        if random_recipient:
            message.random_recipient = True
        elif group:
            message.group = group
        else:
            message.recipient = recipient
        self._put(pb.ChatRequest(send=message))
        return cid

    def ack(self, sequence: int) -> None:
        """Acknowledge every inbox message up to and including `sequence`."""
        self._put(pb.ChatRequest(ack=pb.Ack(sequence=sequence)))

    def ping(self, nonce: int = 0) -> None:
        """Ask the server for a Pong carrying `nonce`."""
        self._put(pb.ChatRequest(ping=pb.Ping(nonce=nonce)))

    def close_writing(self) -> None:
        """Half-close: the server answers what it read, delivers what is pending, then ends."""
        if not self._write_closed:
            self._write_closed = True
            self._outbox.put_nowait(None)

    @property
    def ended(self) -> bool:
        """True once the stream has finished (normally or not) and all events were read."""
        return self._ended is not None

    def cancel(self) -> None:
        """Abort the stream at once."""
        self._write_closed = True
        self._call.cancel()

    async def wait_closed(self, grace: float = 2.0) -> None:
        """Wait up to `grace` seconds for the stream to end, then cancel it."""
        try:
            await asyncio.wait_for(asyncio.shield(self._reader), grace)
        except TimeoutError:
            self.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._reader, 1.0)

    async def aclose(self, grace: float = 2.0) -> None:
        """Half-close, wait up to `grace` seconds for the server to end the stream, cancel."""
        self.close_writing()
        await self.wait_closed(grace)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ChatEvent:
        if self._ended is not None:
            raise StopAsyncIteration
        item = await self._events.get()
        if isinstance(item, _End):
            self._ended = item
            if item.error is not None:
                raise item.error
            raise StopAsyncIteration
        return item
