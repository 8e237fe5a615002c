"""grpc.health.v1.Health on the asyncio server: Watch never blocks Check or shutdown."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ..harness.server_process import ServerProcess
from .conftest import Node

pytestmark = pytest.mark.timeout(60)
VENV_BIN = Path(sys.executable).parent


async def test_abandoned_watches_do_not_block_check(node: Node) -> None:
    """Eight Watch calls opened and abandoned without a login leave Check answering at once."""
    health = health_pb2_grpc.HealthStub(node.channel)
    watches = []
    for _ in range(8):
        call = health.Watch(health_pb2.HealthCheckRequest(service=""))
        first = await asyncio.wait_for(call.read(), 5.0)
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        watches.append(call)
    for call in watches:
        call.cancel()
    for _ in range(3):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=3.0)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_watch_reports_not_serving_on_shutdown(node: Node) -> None:
    """A Watch sees NOT_SERVING as soon as the node starts its graceful shutdown."""
    health = health_pb2_grpc.HealthStub(node.channel)
    call = health.Watch(health_pb2.HealthCheckRequest(service="hubbub.v1.MessengerService"))
    first = await asyncio.wait_for(call.read(), 5.0)
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    stopping = asyncio.create_task(node.server.stop(grace_s=1.0))
    try:
        update = await asyncio.wait_for(call.read(), 5.0)
        assert update.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        await asyncio.wait_for(stopping, 10.0)


def test_sigterm_with_open_watches_exits_within_grace(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """hubbub-server with open Watch calls exits on SIGTERM within --grace (plus margin) and
    releases its database lock, so `restore` works right after."""
    grace_s = 2.0
    server = server_factory("--grace", str(grace_s))
    backup = tmp_path / "before.bak"
    made = subprocess.run(
        [
            str(VENV_BIN / "hubbub-server"),
            "backup",
            str(backup),
            "--database",
            str(server.database),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert made.returncode == 0, made.stderr
    channel = grpc.insecure_channel(server.address)
    try:
        health = health_pb2_grpc.HealthStub(channel)
        watches = [health.Watch(health_pb2.HealthCheckRequest(service="")) for _ in range(3)]
        for call in watches:
            assert next(call).status == health_pb2.HealthCheckResponse.SERVING
        assert server.proc is not None
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(grace_s + 8.0)
        except subprocess.TimeoutExpired:
            pytest.fail(f"hubbub-server still running {grace_s + 8.0:g} s after SIGTERM")
        elapsed = time.monotonic() - started
        assert elapsed < grace_s + 8.0
        for call in watches:
            call.cancel()
    finally:
        channel.close()
    restored = subprocess.run(
        [
            str(VENV_BIN / "hubbub-server"),
            "restore",
            str(backup),
            "--database",
            str(server.database),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert restored.returncode == 0, restored.stdout + restored.stderr
