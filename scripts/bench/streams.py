"""``--streams N``: N live Chat streams on one hubbub node, then one group message to all.

Fan-out here means one send that the server must deliver to every live stream:
a group message (Hubbub's only one-to-many send) to a group of all N users,
created in the seeded database (the API accepts 1,000 names per call, see
``hubbub.server.groups.MAX_MEMBERS``; the store itself has no member cap). The
N streams are multiplexed over N / ``--streams-per-channel`` client channels
(HTTP/2 connections) in this one client process, so the server holds few
sockets; its RSS per stream is therefore the per-stream cost without the
per-connection one (the idle phase, one channel per client, has both).

The same N streams are then opened on the bare relay (same multiplexing) for
its RSS per stream: the floor grpc.aio itself sets.

Figures: streams connected (and how long that took, and how long until the
server and the client were quiet again: every connect is a presence event to
every live stream), server RSS per stream,
and the fan-out time: from writing the group send to the last member reading
it (p50 of the members' arrival too). The open-file limit is raised to the
hard limit when N needs it (inherited by the server).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import grpc

from hubbub.v1 import messenger_pb2 as pb

from .config import Config
from .peer import Peer, make_body
from .phases import open_streams, settle
from .procstat import process_cpu_s, process_rss_bytes, raise_nofile
from .profiling import recording
from .report import fmt
from .seed import open_sqlite, seed_database
from .servers import start_server_process
from .stats import latency_summary
from .system import stop_reporting
from .tracker import Tracker

GROUP = "benchfan"
FANOUT_ID = "fanout-0"
CONNECT_CONCURRENCY = 64  # stream handshakes in flight
MIN_CONNECT_CAP_S = 300.0  # the connect phase may take at least this long, seconds
SETTLE_MAX_S = 300.0  # waiting for the presence events of the connects to be written and read
FANOUT_TIMEOUT_S = 120.0  # waiting for every member to read the group message, seconds


@dataclass
class StreamsResult:
    """Figures of the ``--streams`` phase (times in s or ms, memory in bytes / KiB)."""

    wanted: int = 0
    channels: int = 0
    presence: bool = True
    seed_s: float | None = None
    connected: int = 0
    alive: int = 0
    connect_s: float | None = None
    connect_capped: bool = False
    settle_s: float | None = None
    server_cpu_connect_s: float | None = None
    rss_before_bytes: int | None = None
    rss_after_bytes: int | None = None
    rss_per_stream_kb: float | None = None
    fanout_recipients: int = 0
    fanout_received: int = 0
    fanout_all_ms: float | None = None
    fanout_arrival: dict[str, float | None] = field(default_factory=dict)
    broken_streams: int = 0
    nofile_limit: int = 0
    relay_connected: int = 0
    relay_connect_s: float | None = None
    relay_rss_per_stream_kb: float | None = None

    def lines(self) -> list[str]:
        """The report lines of this phase."""
        capped = " (TIME-CAPPED)" if self.connect_capped else ""
        return [
            f"--streams {self.wanted} on one hubbub node (SQLite), {self.channels} client "
            f"channels, open files {self.nofile_limit}, presence events "
            f"{'on' if self.presence else 'off (hubbub-presence: off)'}:",
            f"  streams connected           {self.connected} of {self.wanted} in "
            f"{fmt(self.connect_s)} s{capped}, quiet {fmt(self.settle_s)} s later (server CPU "
            f"{fmt(self.server_cpu_connect_s)} s); seeding users {fmt(self.seed_s)} s",
            f"  streams still live          {self.alive} (the others were dropped by the server)",
            f"  server RSS per live stream  {fmt(self.rss_per_stream_kb)} KiB "
            f"({fmt((self.rss_before_bytes or 0) / 2**20)} -> "
            f"{fmt((self.rss_after_bytes or 0) / 2**20)} MiB)",
            f"  group fan-out to all        {fmt(self.fanout_all_ms)} ms "
            f"({self.fanout_received} of {self.fanout_recipients} members read it; arrival "
            f"p50 {fmt(self.fanout_arrival.get('p50_ms'))} ms, p99 "
            f"{fmt(self.fanout_arrival.get('p99_ms'))} ms); broken streams {self.broken_streams}",
            f"  bare relay, same streams    {self.relay_connected} connected in "
            f"{fmt(self.relay_connect_s)} s, RSS per stream "
            f"{fmt(self.relay_rss_per_stream_kb)} KiB",
        ]


async def fan_out(
    result: StreamsResult,
    sender: Peer,
    cfg: Config,
    arrivals: dict[str, int],
    everyone: asyncio.Event,
    progress: TextIO,
) -> None:
    """``sender`` sends one group message; wait (≤ FANOUT_TIMEOUT_S s) until every other
    live member read it; fills the fan-out figures of ``result``."""
    result.fanout_recipients = result.alive - 1
    print(f"[streams] one group message to {result.fanout_recipients} live members…", file=progress)
    request = pb.ChatRequest(
        send=pb.SendMessage(
            client_id=FANOUT_ID, group=GROUP, body=make_body(FANOUT_ID, cfg.body_bytes)
        )
    )
    sent_ns = time.perf_counter_ns()
    try:
        await sender.write(request)
    except (grpc.RpcError, asyncio.InvalidStateError) as exc:  # dropped just now
        print(f"[streams] the sender's stream ended: {exc!r}", file=progress)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(everyone.wait(), FANOUT_TIMEOUT_S)
    result.fanout_received = len(arrivals)
    if arrivals:
        result.fanout_all_ms = (max(arrivals.values()) - sent_ns) / 1e6
        result.fanout_arrival = latency_summary([t - sent_ns for t in arrivals.values()])


async def relay_streams(
    result: StreamsResult,
    names: list[str],
    per_channel: int,
    cfg: Config,
    workdir: Path,
    progress: TextIO,
) -> None:
    """The same N streams on the bare relay (no storage, no presence): RSS per stream."""
    server = await start_server_process("streams-relay", workdir, relay=True)
    channels = [
        grpc.aio.insecure_channel(server.address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(result.channels)
    ]
    peers = [
        Peer(name, name, server.address, Tracker(), 1, channel=channels[i // max(1, per_channel)])
        for i, name in enumerate(names)
    ]
    connected: list[Peer] = []
    try:
        before = process_rss_bytes(server.pid)
        print(f"[streams] bare relay: opening {len(names)} streams…", file=progress)
        t0 = time.perf_counter()
        cap = max(MIN_CONNECT_CAP_S, cfg.phase_cap_s)
        connected = await open_streams(peers, CONNECT_CONCURRENCY, time.monotonic() + cap)
        result.relay_connect_s = time.perf_counter() - t0
        result.relay_connected = len(connected)
        await settle(server.pid, cfg.idle_settle_s, SETTLE_MAX_S)
        after = process_rss_bytes(server.pid)
        if connected and before and after:
            result.relay_rss_per_stream_kb = (after - before) / len(connected) / 1024
    finally:
        await asyncio.gather(*(p.close() for p in connected))
        for channel in channels:
            await channel.close(None)
        await stop_reporting(server, progress)


async def run_streams(
    n: int,
    per_channel: int,
    cfg: Config,
    tmp: Path,
    progress: TextIO,
    profile: Path | None = None,
    presence: bool = True,
) -> StreamsResult:
    """Seed N users in one group, open N streams, read RSS, fan one message out.
    ``profile``: a directory for a py-spy recording of the server while the streams
    connect and settle (``streams-connect.txt``). ``presence`` False: the streams opt
    out of presence events (``hubbub-presence: off``), as bots would."""
    result = StreamsResult(wanted=n, channels=math.ceil(n / max(1, per_channel)), presence=presence)
    result.nofile_limit = raise_nofile(n + 4096)
    workdir = tmp / "streams"
    workdir.mkdir(mode=0o700)
    names = [f"bench_f{i}" for i in range(n)]
    print(f"[streams] seeding {n} users in group {GROUP}…", file=progress)
    t0 = time.perf_counter()
    database = workdir / "streams.db"
    tokens = await seed_database(open_sqlite(database), names, group=GROUP, group_members=n)
    result.seed_s = time.perf_counter() - t0
    server = await start_server_process("streams", workdir, database=database)
    tracker = Tracker()
    arrivals: dict[str, int] = {}
    everyone = asyncio.Event()

    def on_message(peer: Peer, message: pb.Message, now_ns: int) -> None:
        """Note the first arrival of the fan-out message at each member."""
        if message.client_id == FANOUT_ID and peer.name not in arrivals:
            arrivals[peer.name] = now_ns
            if len(arrivals) >= result.fanout_recipients > 0:
                everyone.set()

    channels = [
        grpc.aio.insecure_channel(server.address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(result.channels)
    ]
    peers = [
        Peer(
            name,
            tokens[name],
            server.address,
            tracker,
            1,
            channel=channels[i // max(1, per_channel)],
            on_message=on_message,
            presence=presence,
            batching=True,  # as the client library does: queued events share a frame
        )
        for i, name in enumerate(names)
    ]
    connected: list[Peer] = []
    try:
        result.rss_before_bytes = process_rss_bytes(server.pid)
        cpu0 = process_cpu_s(server.pid)
        print(f"[streams] opening {n} streams over {result.channels} channels…", file=progress)
        t0 = time.perf_counter()
        cap = max(MIN_CONNECT_CAP_S, cfg.phase_cap_s)
        async with recording(server.pid, profile / "streams-connect.txt" if profile else None):
            connected = await open_streams(peers, CONNECT_CONCURRENCY, time.monotonic() + cap)
            result.connect_s = time.perf_counter() - t0
            result.connect_capped = len(connected) < n
            result.connected = len(connected)
            result.settle_s = await settle(server.pid, cfg.idle_settle_s, SETTLE_MAX_S)
        cpu1 = process_cpu_s(server.pid)
        if cpu0 is not None and cpu1 is not None:
            result.server_cpu_connect_s = cpu1 - cpu0
        result.rss_after_bytes = process_rss_bytes(server.pid)
        # streams the server dropped meanwhile (SLOW_CONSUMER) are not live any more
        alive = [p for p in connected if p.call is not None and not p.call.done()]
        result.alive = len(alive)
        if alive and result.rss_before_bytes and result.rss_after_bytes:
            delta = result.rss_after_bytes - result.rss_before_bytes
            result.rss_per_stream_kb = delta / len(alive) / 1024
        if len(alive) > 1:
            await fan_out(result, alive[0], cfg, arrivals, everyone, progress)
    finally:
        print("[streams] closing…", file=progress)
        await asyncio.gather(*(p.close() for p in connected))
        for channel in channels:
            await channel.close(None)
        await stop_reporting(server, progress)
    result.broken_streams = tracker.integrity.broken_streams
    await relay_streams(result, names, per_channel, cfg, workdir, progress)
    return result
