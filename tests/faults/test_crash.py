"""Nothing lost, nothing twice: load through the client library under crashes and faults."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ..harness.server_process import ServerProcess
from ..harness.torture import torture


@pytest.mark.timeout(300)
async def test_kill9_restart_cycles_lose_nothing(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """5 kill -9/restart cycles under load: every confirmed message shown once, in order."""
    server = server_factory()
    report = await torture(server, ["kill9"] * 5, pairs=4, seed=5)
    print(report.summary())
    assert report.verdict.confirmed > 100
    assert report.verdict.ok, report.summary()


@pytest.mark.timeout(300)
async def test_network_faults_lose_nothing(server_factory: Callable[..., ServerProcess]) -> None:
    """Connection cuts, mid-frame resets and delays under load lose and duplicate nothing."""
    server = server_factory()
    plan = ["cut", "reset", "delay", "reset", "cut", "reset"]
    report = await torture(server, plan, pairs=4, seed=7)
    print(report.summary())
    assert report.verdict.confirmed > 100
    assert report.verdict.ok, report.summary()


@pytest.mark.timeout(300)
async def test_graceful_restarts_lose_nothing(server_factory: Callable[..., ServerProcess]) -> None:
    """SIGTERM under load: exit 0 within the grace period; clients resume without loss."""
    server = server_factory()
    report = await torture(server, ["sigterm"] * 3, pairs=4, seed=11)
    print(report.summary())
    assert report.verdict.confirmed > 100
    assert report.verdict.ok, report.summary()


@pytest.mark.timeout(300)
async def test_sigstop_longer_than_keepalive_loses_nothing(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """A server frozen (SIGSTOP) past the clients' keepalive, then resumed: nothing lost."""
    server = server_factory()
    report = await torture(server, ["sigstop"], pairs=3, seed=13, pause_s=35.0)
    print(report.summary())
    assert report.verdict.confirmed > 50
    assert report.verdict.ok, report.summary()
