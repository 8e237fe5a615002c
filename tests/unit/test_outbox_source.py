"""The outbox's coalesced source: asked only when the queue is empty, never past a close."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from hubbub.server.events import OutEvent, OutPong
from hubbub.server.outbox import Outbox, OutboxClosed

pytestmark = pytest.mark.timeout(10)


class Pending:
    """A source handing out its pending pongs two at a time; counts how often it is asked."""

    def __init__(self, *nonces: int) -> None:
        self.pending = list(nonces)
        self.asked = 0

    def __call__(self) -> Sequence[OutEvent]:
        self.asked += 1
        taken, self.pending = self.pending[:2], self.pending[2:]
        return [OutPong(n) for n in taken]


async def test_queued_events_go_first_then_the_source_in_chunks() -> None:
    """get() drains the queue before asking the source, which it asks again when empty."""
    box = Outbox()
    source = Pending(10, 11, 12)
    box.source = source
    assert box.offer(OutPong(1))
    got = [await box.get() for _ in range(4)]
    assert got == [OutPong(1), OutPong(10), OutPong(11), OutPong(12)]
    assert box.queued_bytes == 0


async def test_refill_wakes_a_waiting_writer_and_never_touches_a_busy_queue() -> None:
    """refill() on an empty outbox wakes get(); on a non-empty one it does not ask."""
    box = Outbox()
    source = Pending()
    box.source = source
    waiting = asyncio.create_task(box.get())
    await asyncio.sleep(0.01)
    source.pending = [7]
    box.refill()
    assert await asyncio.wait_for(waiting, 1) == OutPong(7)
    box.offer(OutPong(1))
    asked = source.asked
    box.refill()
    assert source.asked == asked


async def test_a_closed_outbox_does_not_ask_its_source() -> None:
    """After close, the writer gets what was queued (drain) and nothing from the source."""
    box = Outbox()
    box.source = Pending(10)
    box.offer(OutPong(1))
    box.close(drain=True)
    assert await box.get() == OutPong(1)
    with pytest.raises(OutboxClosed):
        await box.get()


async def test_a_cancelled_waiting_put_does_not_disturb_another() -> None:
    """Two puts wait for room; cancelling one leaves the other waiting, then queued."""
    box = Outbox(max_events=1)
    box.offer(OutPong(1))
    first = asyncio.create_task(box.put(OutPong(2)))
    second = asyncio.create_task(box.put(OutPong(3)))
    await asyncio.sleep(0.01)
    first.cancel()
    await asyncio.sleep(0.01)
    assert first.cancelled() and not second.done()
    assert await box.get() == OutPong(1)
    await asyncio.wait_for(second, 1)
    assert await box.get() == OutPong(3)
