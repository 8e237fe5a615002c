"""A per-stream write deadline with one timer per stream instead of one per write.

``asyncio.timeout`` around every ``context.write`` creates, reschedules and
cancels a loop timer per frame (~10 µs each, several frames per message). A
stream writes one frame at a time, so one timer can watch them all: each write
only stamps its start time, and the timer, armed when a write starts and none is
pending, re-arms itself for the current write's deadline or lapses when the
stream is idle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class WriteWatchdog:
    """Calls ``on_expiry()`` once a write has been in progress for ``timeout_s`` seconds.

    Use from the event loop's thread: :meth:`started` before each write, :meth:`done`
    after it, :meth:`cancel` when the stream ends. ``on_expiry`` runs at most once, from
    the loop (the write is still pending then: the caller ends the stream, e.g. by
    cancelling the writer).

    Args:
        timeout_s: longest accepted write, seconds (> 0).
        on_expiry: what to do about a stuck write.
    """

    __slots__ = ("_loop", "_on_expiry", "_started", "_timeout_s", "_timer")

    def __init__(self, timeout_s: float, on_expiry: Callable[[], None]) -> None:
        self._timeout_s = timeout_s
        self._on_expiry = on_expiry
        self._loop = asyncio.get_running_loop()
        self._started: float | None = None  # loop.time() when the current write started
        self._timer: asyncio.TimerHandle | None = None

    def started(self) -> None:
        """A write starts now."""
        self._started = now = self._loop.time()
        if self._timer is None:
            self._timer = self._loop.call_at(now + self._timeout_s, self._check)

    def done(self) -> None:
        """The current write finished."""
        self._started = None

    def cancel(self) -> None:
        """Stop watching (the stream ended)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._started = None

    def _check(self) -> None:
        self._timer = None
        if self._started is None:
            return  # idle: the next write arms the timer again
        deadline = self._started + self._timeout_s
        if self._loop.time() >= deadline:
            self._started = None
            self._on_expiry()
        else:
            self._timer = self._loop.call_at(deadline, self._check)
