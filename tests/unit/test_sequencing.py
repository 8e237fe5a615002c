"""The sans-I/O sequence and ack bookkeeping of one stream (no store, no event loop)."""

from __future__ import annotations

import pytest

from hubbub.server.errors import InvalidArgument
from hubbub.server.sequencing import Delivery, StreamSequence


def test_nothing_is_queued_before_delivery_starts() -> None:
    """A message stored before Resume is ignored but raises the known end of the inbox."""
    position = StreamSequence()
    assert position.stored(3, filling=False) is Delivery.IGNORE
    assert position.target == 3
    position.start(after=0, last=2)
    assert (position.enqueued, position.target, position.behind) == (0, 3, True)


def test_the_next_sequence_is_queued_at_once_and_counted() -> None:
    """The next sequence goes straight to the outbox when no replay runs."""
    position = StreamSequence()
    position.start(after=4, last=4)
    assert position.stored(5, filling=False) is Delivery.QUEUE
    assert (position.enqueued, position.target, position.behind) == (5, 5, False)


def test_a_sequence_already_queued_is_ignored() -> None:
    """A duplicate publish (or one replayed by the fill already) is not queued twice."""
    position = StreamSequence()
    position.start(after=4, last=4)
    assert position.stored(4, filling=False) is Delivery.IGNORE
    assert position.stored(2, filling=True) is Delivery.IGNORE
    assert position.enqueued == 4


def test_out_of_order_or_during_a_replay_goes_through_the_fill() -> None:
    """A later sequence, or the next one while the fill runs, is left to the fill (order)."""
    position = StreamSequence()
    position.start(after=1, last=1)
    assert position.stored(3, filling=False) is Delivery.FILL
    assert (position.enqueued, position.target) == (1, 3)
    assert position.stored(2, filling=True) is Delivery.FILL
    assert position.enqueued == 1


def test_the_fill_queues_up_to_the_target_and_gives_up_a_missing_range() -> None:
    """queued() advances the position; give_up_missing() ends waiting on a damaged inbox."""
    position = StreamSequence()
    position.start(after=0, last=6)
    position.queued(1)
    position.queued(3)  # 2 is missing: the session logs it and goes on
    assert (position.enqueued, position.behind) == (3, True)
    assert position.give_up_missing() == range(4, 7)
    assert (position.enqueued, position.target, position.behind) == (3, 3, False)


def test_acks_are_cumulative_and_never_beyond_what_was_sent() -> None:
    """An ack past the last queued sequence is refused; a lower or equal one changes nothing."""
    position = StreamSequence()
    position.start(after=0, last=3)
    position.queued(1)
    position.queued(2)
    with pytest.raises(InvalidArgument, match="3 was not sent on this stream"):
        position.ack(3)
    assert position.ack(2) is True
    assert position.ack(1) is False
    assert position.ack(2) is False
    assert position.acked == 2


def test_ack_writes_are_coalesced_to_the_highest_ack() -> None:
    """Only the highest ack recorded is written; nothing is due once it is stored."""
    position = StreamSequence()
    position.start(after=5, last=5)
    assert position.ack_to_store() is None
    position.ack(2)
    position.ack(4)
    assert position.ack_to_store() == 4
    position.ack(5)  # arrives while 4 is being written
    position.ack_written(4)
    assert position.ack_to_store() == 5
    position.ack_written(5)
    assert position.ack_to_store() is None
    assert position.ack_stored == 5
