"""Load driver and verdict for fault-injection runs, through the real client library.

K senders and K receivers, each a :class:`hubbub.client.Conversation` (the
client's reconnecting chat): sender ``sender{i}`` sends numbered messages to
receiver ``reader{i}``, keeping at most ``in_flight`` unconfirmed. Every message body
is ``"<sender>|<counter>"``. Each side logs what happened:

- ``confirmed``: (sender, counter) whose SendConfirmed the sender saw
  (the server said: stored durably);
- ``shown``: (receiver, sender, counter, sequence) as the receiver showed them.

Senders acknowledge the delivery receipts they get, as the CLI does once it has shown
them, so their inbox backlog stays small.

The verdict: lost = confirmed − shown (must be empty), duplicates shown (0),
and per conversation the counters shown must increase (order holds).

Against several nodes (``nodes``), every client is given all node addresses for
failover, each in its own rotation so the clients spread over the nodes, and the
driver keeps a ``timeline`` of each client's connection losses, reconnects and first
delivery after a reconnect (for failover times, see ``tests/harness/cluster.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from hubbub.client import (
    Client,
    ConnectionLost,
    Conversation,
    DeliveryReceipt,
    EventRejected,
    HubbubError,
    IncomingMessage,
    Reconnected,
    SendConfirmed,
)
from hubbub.client.backoff import Backoff

PASSWORD = "torture password 1"

#: Timeline event kinds: the stream dropped (or the server said it is going away), a new
#: stream was opened and resumed, the first delivery after that reconnect (a sender's
#: SendConfirmed, a receiver's IncomingMessage).
LOST, BACK, DELIVERING = "lost", "back", "delivering"


def failover_target(addresses: Sequence[str]) -> str:
    """The client target for ``addresses`` ("host:port"), tried in this order.

    The comma list that ``hubbub --server`` and :class:`hubbub.client.Client` take: the
    client connects to the first address and moves on to the next when its node fails.
    """
    return ",".join(addresses)


def rotated(addresses: Sequence[str], offset: int) -> list[str]:
    """``addresses`` starting at index ``offset`` (modulo their number), wrapping around."""
    k = offset % len(addresses)
    return [*addresses[k:], *addresses[:k]]


@dataclass
class Verdict:
    """Outcome of a run; ``ok`` when nothing was lost, duplicated or reordered."""

    sent: int
    confirmed: int
    shown: int
    lost: list[tuple[str, int]]
    duplicated: list[tuple[str, int]]
    out_of_order: list[str]
    rejected: int

    @property
    def ok(self) -> bool:
        """True if lost, duplicated and out_of_order are all empty."""
        return not (self.lost or self.duplicated or self.out_of_order)

    def summary(self) -> str:
        """One line of figures."""
        return (
            f"sent {self.sent}, confirmed {self.confirmed}, shown {self.shown}, "
            f"lost {len(self.lost)}, duplicated {len(self.duplicated)}, "
            f"out of order {len(self.out_of_order)}, rejected {self.rejected}"
        )


@dataclass
class _Side:
    name: str
    target: str
    conversation: Conversation | None = None
    task: asyncio.Task[None] | None = None
    recovering: bool = False


@dataclass
class LoadDriver:
    """Drives ``pairs`` sender→receiver conversations against ``address``.

    Args:
        address: "host:port" clients connect to (the server, or a fault proxy); ignored
            when ``nodes`` is given.
        pairs: number of sender/receiver pairs.
        in_flight: most unconfirmed messages per sender.
        pace_s: pause between sends of one sender, seconds.
        nodes: "host:port" of every node of a cluster. Each client gets all of them
            (:func:`failover_target`), rotated so that pair ``i``'s receiver starts on
            node ``i`` and its sender on node ``i + 1``: the clients spread over the
            nodes and every pair's messages cross nodes.

    ``timeline`` holds ``(time.monotonic() s, client name, LOST | BACK | DELIVERING)``.
    """

    address: str = ""
    pairs: int = 4
    in_flight: int = 16
    pace_s: float = 0.002
    nodes: list[str] = field(default_factory=list)
    sent: Counter[str] = field(default_factory=Counter)
    confirmed: set[tuple[str, int]] = field(default_factory=set)
    shown: list[tuple[str, str, int, int]] = field(default_factory=list)
    rejected: int = 0
    timeline: list[tuple[float, str, str]] = field(default_factory=list)
    _sending: bool = True
    _sides: list[_Side] = field(default_factory=list)
    _counters: dict[str, dict[str, int]] = field(default_factory=dict)

    def _target(self, offset: int) -> str:
        if not self.nodes:
            return self.address
        return failover_target(rotated(self.nodes, offset))

    @property
    def names(self) -> list[str]:
        """Every client's user name (receivers ``reader{i}``, senders ``sender{i}``)."""
        return [side.name for side in self._sides]

    def connected(self) -> int:
        """How many clients have a stream open now."""
        return sum(
            1 for s in self._sides if s.conversation is not None and s.conversation.connected
        )

    async def setup(self) -> None:
        """Register every user (idempotent)."""
        async with Client(self._target(0)) as client:
            for i in range(self.pairs):
                for name in (f"sender{i}", f"reader{i}"):
                    with contextlib.suppress(HubbubError):
                        await client.register(name, PASSWORD)

    async def start(self) -> None:
        """Start every sender and receiver."""
        for i in range(self.pairs):
            receiver = _Side(f"reader{i}", self._target(i))
            receiver.task = asyncio.create_task(self._receive(receiver))
            sender = _Side(f"sender{i}", self._target(i + 1))
            sender.task = asyncio.create_task(self._send(sender, f"reader{i}"))
            self._sides += [receiver, sender]

    def _note(self, side: _Side, event: object) -> None:
        """Keep the timeline: losses, reconnects and the first delivery after one."""
        if isinstance(event, ConnectionLost):
            self.timeline.append((time.monotonic(), side.name, LOST))
        elif isinstance(event, Reconnected):
            self.timeline.append((time.monotonic(), side.name, BACK))
            side.recovering = True
        elif side.recovering and isinstance(event, IncomingMessage | SendConfirmed):
            self.timeline.append((time.monotonic(), side.name, DELIVERING))
            side.recovering = False

    async def _conversation(self, side: _Side) -> Conversation:
        name = side.name
        backoff = Backoff()
        while True:
            client = Client(side.target)
            try:
                await client.login(name, PASSWORD)
                conversation = Conversation(client, password=PASSWORD)
                await conversation.start()
                return conversation
            except HubbubError:
                await client.close()
                await asyncio.sleep(backoff.next_delay())

    async def _receive(self, side: _Side) -> None:
        conv = side.conversation = await self._conversation(side)
        async for event in conv:
            self._note(side, event)
            if isinstance(event, IncomingMessage):
                sender, _, counter = event.body.partition("|")
                self.shown.append((side.name, sender, int(counter), event.sequence))
                conv.ack(event.sequence)

    async def _send(self, side: _Side, receiver: str) -> None:
        conv = side.conversation = await self._conversation(side)
        counters = self._counters.setdefault(side.name, {})
        room = asyncio.Event()
        room.set()

        async def events() -> None:
            async for event in conv:
                self._note(side, event)
                if isinstance(event, SendConfirmed) and event.client_id in counters:
                    self.confirmed.add((side.name, counters[event.client_id]))
                elif isinstance(event, EventRejected):
                    self.rejected += 1
                elif isinstance(event, DeliveryReceipt):
                    conv.ack(event.sequence)  # "shown", as the CLI does
                if len(conv.pending) < self.in_flight:
                    room.set()

        reader = asyncio.create_task(events())
        try:
            counter = 0
            while self._sending:
                if len(conv.pending) >= self.in_flight:
                    room.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(room.wait(), 0.5)
                    continue
                counter += 1
                client_id = conv.send(receiver, f"{side.name}|{counter}")
                counters[client_id] = counter
                self.sent[side.name] += 1
                await asyncio.sleep(self.pace_s)
            await reader
        finally:
            reader.cancel()

    async def wait_started(self, within_s: float = 120.0) -> None:
        """Wait until every sender and receiver has its conversation open (bounded)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while any(s.conversation is None for s in self._sides):
            if loop.time() > deadline:
                raise TimeoutError("load driver clients did not all connect")
            await asyncio.sleep(0.1)

    def stop_sending(self) -> None:
        """Senders stop making new messages (unconfirmed ones are still re-sent)."""
        self._sending = False

    def _unconfirmed(self) -> int:
        return sum(
            len(s.conversation.pending)
            for s in self._sides
            if s.conversation is not None and s.name.startswith("sender")
        )

    async def drain(self, within_s: float = 60.0) -> None:
        """Wait until every send is confirmed and every confirmed message shown (bounded)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while loop.time() < deadline:
            shown = {(s, c) for _, s, c, _ in self.shown}
            if self._unconfirmed() == 0 and self.confirmed <= shown:
                return
            await asyncio.sleep(0.2)

    async def close(self) -> None:
        """Stop every task and close every connection."""
        self.stop_sending()
        for side in self._sides:
            if side.task is not None:
                side.task.cancel()
        await asyncio.gather(
            *(s.task for s in self._sides if s.task is not None), return_exceptions=True
        )
        for side in self._sides:
            if side.conversation is not None:
                with contextlib.suppress(Exception):
                    await side.conversation.close(0.5)
                await side.conversation.client.close()

    def verdict(self) -> Verdict:
        """Compare what senders saw confirmed with what receivers showed."""
        shown_keys = [(s, c) for _, s, c, _ in self.shown]
        counts = Counter(shown_keys)
        last: dict[tuple[str, str], int] = {}
        out_of_order = []
        for receiver, sender, counter, _seq in self.shown:
            key = (sender, receiver)
            if counter <= last.get(key, 0):
                out_of_order.append(f"{sender}->{receiver}: {counter} after {last[key]}")
            last[key] = max(counter, last.get(key, 0))
        return Verdict(
            sent=sum(self.sent.values()),
            confirmed=len(self.confirmed),
            shown=len(self.shown),
            lost=sorted(self.confirmed - set(shown_keys)),
            duplicated=sorted(k for k, n in counts.items() if n > 1),
            out_of_order=out_of_order,
            rejected=self.rejected,
        )
