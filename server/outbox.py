"""A stream's bounded outbound queue (backpressure boundary between hub and writer).

The hub only ever *offers* to an outbox (never awaits a slow consumer): a full
outbox refuses the event and the hub disconnects that client. The per-stream
replay task may *put*, which waits for room. The stream's writer *gets*.

Events that are coalesced rather than queued (presence: the latest state of each
user) come from the outbox's :attr:`Outbox.source`, asked for more only when the
queue is empty (:meth:`Outbox.refill`): they never pile up behind a slow writer.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence

from .errors import OutboxClosed
from .events import OutEvent

__all__ = ["Outbox", "OutboxClosed", "Source"]

Source = Callable[[], Sequence[OutEvent]]
"""Gives the next few coalesced events (an empty sequence when there are none)."""


class _Flag:
    """The part of :class:`asyncio.Event` an outbox uses (``set``, ``clear``, ``wait``),
    holding a waiter future only while someone waits: an Event allocates its waiter
    deque up front (~0.7 KB), an outbox needs two, and a node holds one outbox per
    live stream (10,000 and more)."""

    __slots__ = ("_set", "_waiter")

    def __init__(self, value: bool = False) -> None:
        self._set = value
        self._waiter: asyncio.Future[None] | None = None

    def is_set(self) -> bool:
        """True if set."""
        return self._set

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        self._set = True
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def clear(self) -> None:
        """Unset the flag."""
        self._set = False

    async def wait(self) -> None:
        """Return once the flag is set (at once if it is). Any number of tasks may wait;
        a waiter that is cancelled does not disturb the others."""
        if self._set:
            return
        if self._waiter is None:
            self._waiter = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._waiter)


class Outbox:
    """FIFO of outbound events bounded by count and by bytes.

    Args:
        max_events: most queued events.
        max_bytes: most queued bytes (sizes as given by the caller).
    """

    __slots__ = (
        "_abort",
        "_bytes",
        "_closed",
        "_coalesced",
        "_items",
        "_readable",
        "_writable",
        "max_bytes",
        "max_events",
        "source",
    )

    def __init__(self, max_events: int = 1024, max_bytes: int = 8 * 1024 * 1024) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._items: deque[tuple[OutEvent, int]] = deque()
        self._bytes = 0
        self._coalesced = 0  # events at the head of the queue that came from the source
        self._closed = False
        self._abort = False
        self._readable = _Flag()
        self._writable = _Flag(True)
        self.source: Source | None = None  # coalesced events, taken when the queue is empty

    def __len__(self) -> int:
        return len(self._items)

    @property
    def queued_bytes(self) -> int:
        """Bytes currently queued."""
        return self._bytes

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def _has_room(self, size: int) -> bool:
        if not self._items:
            return True  # one event always fits, whatever its size
        queued = len(self._items) - self._coalesced  # the source's events are not counted
        return queued < self.max_events and self._bytes + size <= self.max_bytes

    def offer(self, event: OutEvent, size: int = 64) -> bool:
        """Queue ``event`` if there is room; False if full or closed. Never waits."""
        if self._closed or not self._has_room(size):
            return False
        self._push(event, size)
        return True

    async def put(self, event: OutEvent, size: int = 64) -> None:
        """Queue ``event``, waiting for room. Raises OutboxClosed if closed meanwhile."""
        while not self._closed and not self._has_room(size):
            self._writable.clear()
            await self._writable.wait()
        if self._closed:
            raise OutboxClosed
        self._push(event, size)

    def refill(self) -> None:
        """If the queue is empty and open, queue what :attr:`source` gives now (each
        event counted as 0 bytes; the source bounds how many it gives at once)."""
        if self._items or self._closed or self.source is None:
            return
        for event in self.source():
            self._push(event, 0)
            self._coalesced += 1

    def _push(self, event: OutEvent, size: int) -> None:
        self._items.append((event, size))
        self._bytes += size
        self._readable.set()

    async def get(self) -> OutEvent:
        """Next event. Raises OutboxClosed after an abort, or when closed and drained."""
        return (await self.take(1))[0]

    async def take(self, max_events: int) -> list[OutEvent]:
        """The next event and every event queued behind it, oldest first, at most
        ``max_events`` (≥ 1); waits only for the first one, never to fill the list.

        Raises:
            OutboxClosed: after an abort, or when closed and drained.
        """
        while True:
            if self._abort:
                raise OutboxClosed
            if not self._items:
                self.refill()
            if self._items:
                count = min(max_events, len(self._items))
                taken: list[OutEvent] = []
                for _ in range(count):
                    event, size = self._items.popleft()
                    self._bytes -= size
                    if self._coalesced:  # refill only runs on an empty queue: they lead
                        self._coalesced -= 1
                    taken.append(event)
                self._writable.set()
                return taken
            if self._closed:
                raise OutboxClosed
            self._readable.clear()
            await self._readable.wait()

    def close(self, *, drain: bool) -> None:
        """Refuse new events; with ``drain`` the writer still gets what is queued."""
        self._closed = True
        self._abort = self._abort or not drain
        self._readable.set()
        self._writable.set()
