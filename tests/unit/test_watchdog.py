"""WriteWatchdog: one timer per stream bounds each write, not the stream's lifetime."""

from __future__ import annotations

import asyncio

import pytest

from hubbub.server.watchdog import WriteWatchdog

TIMEOUT_S = 0.2


@pytest.mark.timeout(10)
async def test_many_short_writes_over_several_timeouts_never_expire() -> None:
    """Writes that each end in time never expire, however long the stream keeps writing."""
    expired: list[bool] = []
    watchdog = WriteWatchdog(TIMEOUT_S, lambda: expired.append(True))
    for _ in range(40):  # 4 timeouts' worth of 20 ms writes
        watchdog.started()
        await asyncio.sleep(0.02)
        watchdog.done()
    await asyncio.sleep(TIMEOUT_S * 1.5)  # idle afterwards: nothing to expire either
    watchdog.cancel()
    assert expired == []


@pytest.mark.timeout(10)
async def test_stuck_write_expires_once_after_the_timeout() -> None:
    """A write that does not end calls on_expiry once, no earlier than the timeout."""
    loop = asyncio.get_running_loop()
    expired: list[float] = []
    watchdog = WriteWatchdog(TIMEOUT_S, lambda: expired.append(loop.time()))
    watchdog.started()
    await asyncio.sleep(0.15)
    watchdog.done()
    watchdog.started()  # this one is stuck; the timer armed by the first must not fire it early
    stuck_at = loop.time()
    await asyncio.sleep(TIMEOUT_S * 3)
    watchdog.cancel()
    assert len(expired) == 1
    assert expired[0] - stuck_at >= TIMEOUT_S - 0.01  # uvloop's clock ticks in ms
