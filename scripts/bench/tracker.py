"""Per-message accounting by client id: lost, duplicated, unexpected, corrupt, out of order."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass
class Integrity:
    """Message accounting for one system: every count except ``sent``/``received`` should be 0."""

    sent: int = 0
    received: int = 0
    send_results: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0
    corrupt: int = 0
    errors: int = 0
    out_of_order: int = 0
    receipts: int = 0  # delivery receipts read by senders (Hubbub only; informational)
    broken_streams: int = 0  # Chat calls that ended with an error status

    @property
    def ok(self) -> bool:
        """True if nothing was lost, duplicated, unexpected or corrupted."""
        return not (
            self.lost or self.duplicated or self.unexpected or self.corrupt or self.broken_streams
        )


class Tracker:
    """Send/receive bookkeeping by client id, with times in ns (``time.perf_counter_ns``)."""

    def __init__(self) -> None:
        """Nothing sent yet."""
        self.sent_at: dict[str, int] = {}
        self.body: dict[str, str] = {}
        self.recipient: dict[str, str] = {}
        self.received_at: dict[str, int] = {}
        self.result_at: dict[str, int] = {}
        self.integrity = Integrity()
        self.waiters: dict[str, asyncio.Future[None]] = {}
        self.phase_expect = 0  # messages (and results) the current phase waits for
        self.phase_received = 0
        self.phase_results = 0
        self.phase_done = asyncio.Event()

    def begin_phase(self) -> None:
        """Start counting receipts and send results for a new phase."""
        self.phase_expect = -1  # unknown until every sender is done
        self.phase_received = 0
        self.phase_results = 0
        self.phase_done.clear()

    def end_sending(self, total_sent: int) -> None:
        """Every sender of the phase is done; ``total_sent`` messages were written."""
        self.phase_expect = total_sent
        self._check_phase()

    def _check_phase(self) -> None:
        """Set ``phase_done`` once every message of the phase is received and answered."""
        if (
            self.phase_expect >= 0
            and self.phase_received >= self.phase_expect
            and self.phase_results >= self.phase_expect
        ):
            self.phase_done.set()

    def on_send(self, client_id: str, recipient: str, body: str, now_ns: int) -> None:
        """A send event was written."""
        self.sent_at[client_id] = now_ns
        self.body[client_id] = body
        self.recipient[client_id] = recipient
        self.integrity.sent += 1

    def on_message(self, reader: str, client_id: str, body: str, now_ns: int) -> None:
        """A message event arrived at ``reader``; it must be the recipient."""
        if client_id not in self.sent_at or self.recipient[client_id] != reader:
            self.integrity.unexpected += 1
            return
        if client_id in self.received_at:
            self.integrity.duplicated += 1
            return
        self.received_at[client_id] = now_ns
        self.integrity.received += 1
        if self.body[client_id] != body:
            self.integrity.corrupt += 1
        self.phase_received += 1
        self._wake(client_id)
        self._check_phase()

    def on_result(self, client_id: str, now_ns: int, error: bool = False) -> None:
        """A send_result (or an error) for one of our sends arrived."""
        if client_id in self.result_at or client_id not in self.sent_at:
            return
        self.result_at[client_id] = now_ns
        self.integrity.send_results += not error
        self.integrity.errors += error
        self.phase_results += 1
        self._wake("result:" + client_id)
        self._check_phase()

    def _wake(self, key: str) -> None:
        """Resolve the ping-pong waiter for ``key``, if any."""
        waiter = self.waiters.pop(key, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def waiter(self, key: str) -> asyncio.Future[None]:
        """A future set when ``key`` (a client id, or ``result:<client id>``) happens."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters[key] = fut
        return fut

    def finish(self) -> Integrity:
        """Count the lost messages (sent, never received) and return the totals."""
        self.integrity.lost = sum(1 for cid in self.sent_at if cid not in self.received_at)
        return self.integrity
