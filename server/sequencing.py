"""Sans-I/O bookkeeping of one stream's position in its user's inbox: sequences and acks.

A :class:`~hubbub.server.session.ChatSession` does the I/O (store reads, outbox
writes, ack writes); :class:`StreamSequence` only decides, so the rules can be
tested without a store or an event loop:

* every stream sees its inbox in sequence order without gaps: a stored message is
  queued at once only if it is the next sequence and no replay (*fill*) is running;
  otherwise the fill reads the missing range from the store;
* acks are cumulative, never beyond what was queued on this stream, and stored
  coalesced: only the highest one waiting is written.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .errors import InvalidArgument


class Delivery(enum.Enum):
    """What to do with a message stored for the stream's user (:meth:`StreamSequence.stored`)."""

    IGNORE = "ignore"  # delivery has not started, or the sequence was queued already
    QUEUE = "queue"  # the next sequence: queue it now (already recorded as queued)
    FILL = "fill"  # out of order or a replay is running: let the fill read the store


@dataclass(slots=True)
class StreamSequence:
    """Where one stream stands in its user's inbox; all numbers are inbox sequences.

    Attributes:
        delivering: delivery started (after Resume, or the first other event).
        enqueued: the last sequence queued for the writer.
        target: the highest sequence known to exist in the inbox.
        acked: the highest cumulative ack the client sent.
        ack_stored: the highest ack written to the store.
    """

    delivering: bool = False
    enqueued: int = 0
    target: int = 0
    acked: int = 0
    ack_stored: int = 0

    def start(self, after: int, last: int) -> None:
        """Start delivery after sequence ``after``; ``last`` is the last stored sequence."""
        self.delivering = True
        self.enqueued = after
        self.target = max(self.target, last)

    def stored(self, sequence: int, filling: bool) -> Delivery:
        """A message with ``sequence`` was stored; ``filling`` says a replay is running.

        On :attr:`Delivery.QUEUE` the sequence counts as queued from now on.
        """
        if sequence > self.target:
            self.target = sequence
        if not self.delivering or sequence <= self.enqueued:
            return Delivery.IGNORE
        if sequence == self.enqueued + 1 and not filling:
            self.enqueued = sequence
            return Delivery.QUEUE
        return Delivery.FILL

    @property
    def behind(self) -> bool:
        """True while sequences known to exist are not queued yet."""
        return self.enqueued < self.target

    def queued(self, sequence: int) -> None:
        """The fill queued ``sequence`` (after :attr:`enqueued`; a damaged inbox may skip
        some)."""
        self.enqueued = sequence

    def give_up_missing(self) -> range:
        """The store has nothing after :attr:`enqueued`: stop waiting for the sequences up
        to :attr:`target` (a damaged inbox); the sequences given up."""
        missing = range(self.enqueued + 1, self.target + 1)
        self.target = self.enqueued
        return missing

    def ack(self, sequence: int) -> bool:
        """Record the client's cumulative ack of ``sequence``; True if it raised
        :attr:`acked` (then an ack write is due).

        Raises:
            InvalidArgument: ``sequence`` was not queued on this stream yet.
        """
        if sequence > self.enqueued:
            raise InvalidArgument.for_field(
                "ack.sequence",
                f"{sequence} was not sent on this stream (last sent: {self.enqueued})",
            )
        if sequence <= self.acked:
            return False
        self.acked = sequence
        return True

    def ack_to_store(self) -> int | None:
        """The ack to write next (the highest recorded), or None if it is stored already."""
        return self.acked if self.ack_stored < self.acked else None

    def ack_written(self, sequence: int) -> None:
        """An ack write of ``sequence`` committed."""
        self.ack_stored = max(self.ack_stored, sequence)
