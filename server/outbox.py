"""A stream's bounded outbound queue (backpressure boundary between hub and writer).

The hub only ever *offers* to an outbox (never awaits a slow consumer): a full
outbox refuses the event and the hub disconnects that client. The per-stream
replay task may *put*, which waits for room. The stream's writer *gets*.
"""

from __future__ import annotations

import asyncio
from collections import deque

from .errors import OutboxClosed
from .events import OutEvent

__all__ = ["Outbox", "OutboxClosed"]


class Outbox:
    """FIFO of outbound events bounded by count and by bytes.

    Args:
        max_events: most queued events.
        max_bytes: most queued bytes (sizes as given by the caller).
    """

    def __init__(self, max_events: int = 1024, max_bytes: int = 8 * 1024 * 1024) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._items: deque[tuple[OutEvent, int]] = deque()
        self._bytes = 0
        self._closed = False
        self._abort = False
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()

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
        return len(self._items) < self.max_events and self._bytes + size <= self.max_bytes

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

    def _push(self, event: OutEvent, size: int) -> None:
        self._items.append((event, size))
        self._bytes += size
        self._readable.set()

    async def get(self) -> OutEvent:
        """Next event. Raises OutboxClosed after an abort, or when closed and drained."""
        while True:
            if self._abort:
                raise OutboxClosed
            if self._items:
                event, size = self._items.popleft()
                self._bytes -= size
                self._writable.set()
                return event
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
