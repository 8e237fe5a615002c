"""The per-stream bounded outbox: bounds, waiting puts, close semantics."""

from __future__ import annotations

import asyncio

import pytest

from hubbub.server.events import OutPong
from hubbub.server.outbox import Outbox, OutboxClosed

pytestmark = pytest.mark.timeout(10)


async def test_offer_refuses_past_count_and_byte_bounds() -> None:
    """offer() never waits: it refuses once the count or byte bound would be passed."""
    box = Outbox(max_events=2, max_bytes=1000)
    assert box.offer(OutPong(1), 10) and box.offer(OutPong(2), 10)
    assert not box.offer(OutPong(3), 10)
    bytes_box = Outbox(max_events=100, max_bytes=100)
    assert bytes_box.offer(OutPong(1), 60)
    assert not bytes_box.offer(OutPong(2), 60)
    assert Outbox(max_events=1, max_bytes=1).offer(OutPong(1), 500)  # one event always fits


async def test_put_waits_for_room_and_keeps_order() -> None:
    """put() waits until the writer takes an event; FIFO order is kept."""
    box = Outbox(max_events=1)
    await box.put(OutPong(1))
    waiting = asyncio.create_task(box.put(OutPong(2)))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    assert await box.get() == OutPong(1)
    await waiting
    assert await box.get() == OutPong(2)


async def test_graceful_close_drains_abort_does_not() -> None:
    """close(drain=True) lets the writer finish the queue; close(drain=False) stops at once."""
    box = Outbox()
    box.offer(OutPong(1))
    box.close(drain=True)
    assert not box.offer(OutPong(2))
    assert await box.get() == OutPong(1)
    with pytest.raises(OutboxClosed):
        await box.get()
    aborted = Outbox()
    aborted.offer(OutPong(1))
    aborted.close(drain=False)
    with pytest.raises(OutboxClosed):
        await aborted.get()


async def test_close_wakes_a_waiting_writer_and_putter() -> None:
    """A writer blocked in get() and a producer blocked in put() both wake on close."""
    box = Outbox(max_events=1)
    getter = asyncio.create_task(Outbox().get())
    box.offer(OutPong(1))
    putter = asyncio.create_task(box.put(OutPong(2)))
    await asyncio.sleep(0.01)
    box.close(drain=False)
    with pytest.raises(OutboxClosed):
        await putter
    getter.cancel()


async def test_take_returns_everything_queued_up_to_the_bound_and_waits_only_for_one() -> None:
    """take(n) gives every queued event (at most n) in order, and waits only for the first."""
    box = Outbox()
    for nonce in range(5):
        box.offer(OutPong(nonce), 10)
    assert await box.take(3) == [OutPong(0), OutPong(1), OutPong(2)]
    assert box.queued_bytes == 20
    assert await box.take(10) == [OutPong(3), OutPong(4)]
    waiting = asyncio.create_task(box.take(10))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    box.offer(OutPong(9))
    assert await waiting == [OutPong(9)]
    box.close(drain=False)
    with pytest.raises(OutboxClosed):
        await box.take(10)
