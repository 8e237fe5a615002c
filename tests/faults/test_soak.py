"""Soak: many connect → chat → cancel cycles leave no memory growth and no tasks behind.

grpc/grpc#43360 documents a leak when handlers swallow cancellation; this pins
that Chat cleans up per-stream state whichever way a client goes away.
"""

from __future__ import annotations

import asyncio
import os
import re
import urllib.request
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from hubbub.v1 import messenger_pb2 as pb
from hubbub.v1 import messenger_pb2_grpc as pb_grpc

from ..harness.server_process import ServerProcess

PASSWORD = "correct horse battery"
USERS = 40
CYCLES = int(os.environ.get("HUBBUB_SOAK_CYCLES", "10000"))
WARMUP = 1000


def scrape(server: ServerProcess) -> dict[str, float]:
    """The server's Prometheus metrics as {name{labels}: value}."""
    port = next(
        int(m.group(1))
        for line in server.log
        if (m := re.search(r"metrics on http://[^:]+:(\d+)", line))
    )
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


async def cycle(stub: pb_grpc.MessengerServiceAsyncStub, token: str, style: int) -> bool:
    """One connect → chat → cancel; returns False if the user was still connected."""
    call = stub.Chat(None, metadata=(("authorization", f"Bearer {token}"),))
    try:
        await call.read()  # welcome
        if style == 0:
            return True  # cancel right after the welcome
        await call.write(pb.ChatRequest(resume=pb.Resume()))
        await call.write(pb.ChatRequest(ping=pb.Ping(nonce=style)))
        if style == 1:
            while True:
                event = await call.read()
                assert isinstance(event, pb.ChatResponse), "the stream ended"  # not EOF
                if event.WhichOneof("event") == "pong":
                    break
        elif style == 2:
            await call.write(
                pb.ChatRequest(
                    send=pb.SendMessage(
                        client_id=os.urandom(8).hex(), recipient="echobot", body="hi"
                    )
                )
            )
            # cancel while the echo is on its way (mid-read)
        return True
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.ALREADY_EXISTS:
            return False
        raise
    finally:
        call.cancel()


async def run_cycles(server: ServerProcess, tokens: list[str], count: int) -> int:
    """``count`` cycles, ``len(tokens)`` at a time; returns how many were refused as busy."""
    busy = 0
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = pb_grpc.MessengerServiceStub(channel)

        async def worker(token: str, n: int) -> None:
            nonlocal busy
            for i in range(n):
                if not await cycle(stub, token, i % 3):
                    busy += 1
                    await asyncio.sleep(0.01)

        per = count // len(tokens)
        await asyncio.gather(*(worker(t, per) for t in tokens))
    return busy


def rss_bytes(server: ServerProcess) -> int:
    """Resident set size of the server process."""
    assert server.proc is not None
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    found = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert found is not None
    return int(found.group(1)) * 1024


async def settle(server: ServerProcess) -> dict[str, float]:
    """Wait until no stream is live and the task gauge has been resampled."""
    for _ in range(100):
        await asyncio.sleep(0.2)
        values = scrape(server)
        if values["hubbub_streams_active"] == 0:
            await asyncio.sleep(1.2)  # one more sampling period
            return scrape(server)
    raise AssertionError("streams stayed active")


@pytest.mark.timeout(600)
async def test_connect_chat_cancel_cycles_leak_nothing(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """10,000 connect→chat→cancel cycles keep RSS within 40 MiB and leave no tasks behind."""
    # 40 accounts from one address: above the default per-address Register limit
    server = server_factory("--metrics-port", "0", "--register-limit", "1000 per hour")
    tokens = []
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = pb_grpc.MessengerServiceStub(channel)
        for i in range(USERS):
            creds = {"username": f"soak{i}", "password": PASSWORD}
            await stub.Register(pb.RegisterRequest(**creds))
            tokens.append((await stub.Login(pb.LoginRequest(**creds))).token)
    await run_cycles(server, tokens, WARMUP)
    before = await settle(server)
    rss_before = rss_bytes(server)
    busy = await run_cycles(server, tokens, CYCLES)
    after = await settle(server)
    rss_after = rss_bytes(server)
    opened = after["hubbub_streams_opened_total"] - before["hubbub_streams_opened_total"]
    print(
        f"{CYCLES} cycles ({opened:.0f} streams, {busy} busy retries): RSS "
        f"{rss_before / 2**20:.1f} → {rss_after / 2**20:.1f} MiB, tasks "
        f"{before['hubbub_asyncio_tasks']:.0f} → {after['hubbub_asyncio_tasks']:.0f}"
    )
    assert opened >= CYCLES - busy
    assert after["hubbub_asyncio_tasks"] <= before["hubbub_asyncio_tasks"]
    assert rss_after - rss_before < 40 * 2**20
