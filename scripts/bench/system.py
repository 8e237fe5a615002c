"""One system's run: start its server, give it users, run the phases, stop it."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from .config import Config
from .peer import Peer
from .phases import IdleStreams, LightLoad, run_idle, run_open_loop, run_pingpong, run_window_phase
from .procstat import process_cpu_s
from .profiling import recording
from .seed import open_sqlite, seed_database
from .servers import ServerProcess, start_server_process, stop_server_process
from .stats import latency_summary
from .tracker import Integrity, Tracker


@dataclass
class SystemResult:
    """Figures for one system: rates in msg/s, latencies in ms, CPU in % and µs/msg."""

    name: str
    throughput_msg_s: float | None = None
    throughput_messages: int = 0
    throughput_elapsed_s: float | None = None
    throughput_capped: bool = False
    pingpong: dict[str, float | None] = field(default_factory=dict)
    pingpong_ack: dict[str, float | None] = field(default_factory=dict)
    load_e2e: dict[str, float | None] = field(default_factory=dict)
    load_ack: dict[str, float | None] = field(default_factory=dict)
    server_cpu_pct: float | None = None
    server_cpu_us_per_msg: float | None = None
    client_cpu_pct: float | None = None
    setup_s: float | None = None
    backend_cpu_us_per_msg: float | None = None  # PostgreSQL + Redis (cluster only)
    light: LightLoad | None = None
    idle: IdleStreams | None = None
    integrity: Integrity = field(default_factory=Integrity)


# The light-load rate in msg/s, or how to derive it from the max-throughput figures
# measured just before (the relay's own max); None = no light-load phase.
LightRate = float | Callable[[SystemResult], float | None] | None


def pair_names(pairs: int) -> list[str]:
    """``bench_s0, bench_r0, bench_s1, …``: sender then receiver of each pair."""
    return [f"bench_{role}{i}" for i in range(pairs) for role in ("s", "r")]


def idle_names(count: int) -> list[str]:
    """Usernames of the idle streams."""
    return [f"bench_idle{i}" for i in range(count)]


async def run_load_phases(
    result: SystemResult,
    pairs: list[tuple[Peer, Peer]],
    tracker: Tracker,
    cfg: Config,
    server_pids: list[int],
    light_rate: LightRate,
    progress: TextIO,
    profile: Path | None = None,
) -> None:
    """Warm-up, ping-pong, max throughput and (if ``light_rate``) light load over
    connected ``pairs``; server CPU summed over ``server_pids``. Fills ``result``.

    ``profile``: a directory for py-spy recordings of the throughput and light-load
    phases of the first server (``<name>-max.txt``, ``<name>-light.txt``).
    """
    kind = result.name
    print(f"[{kind}] warm-up {cfg.warmup * cfg.pairs} messages…", file=progress)
    await run_window_phase(pairs, tracker, cfg, "warm", cfg.warmup)

    print(f"[{kind}] ping-pong {cfg.pingpong} messages…", file=progress)
    ping_ids = await run_pingpong(pairs[0][0], pairs[0][1], tracker, cfg)
    result.pingpong = latency_summary(
        [tracker.received_at[c] - tracker.sent_at[c] for c in ping_ids if c in tracker.received_at]
    )
    result.pingpong_ack = latency_summary(
        [tracker.result_at[c] - tracker.sent_at[c] for c in ping_ids if c in tracker.result_at]
    )

    per_pair = max(1, cfg.messages // cfg.pairs)
    print(
        f"[{kind}] throughput {per_pair * cfg.pairs} messages, {cfg.pairs} pairs, "
        f"window {cfg.window}…",
        file=progress,
    )
    max_profile = profile / f"{kind}-max.txt" if profile else None
    async with recording(server_pids[0], max_profile):
        cpu_server0 = [process_cpu_s(pid) for pid in server_pids]
        cpu_client0 = time.process_time()
        wall0 = time.perf_counter()
        ids, capped = await run_window_phase(pairs, tracker, cfg, "load", per_pair)
        wall = time.perf_counter() - wall0
        cpu_server1 = [process_cpu_s(pid) for pid in server_pids]
        cpu_client = time.process_time() - cpu_client0

    received = [c for c in ids if c in tracker.received_at]
    result.throughput_capped = capped
    result.throughput_messages = len(received)
    if received:
        first = min(tracker.sent_at[c] for c in ids)
        last = max(tracker.received_at[c] for c in received)
        elapsed = (last - first) / 1e9
        result.throughput_elapsed_s = elapsed
        result.throughput_msg_s = len(received) / elapsed if elapsed > 0 else None
    result.load_e2e = latency_summary(
        [tracker.received_at[c] - tracker.sent_at[c] for c in received]
    )
    result.load_ack = latency_summary(
        [tracker.result_at[c] - tracker.sent_at[c] for c in ids if c in tracker.result_at]
    )
    if None not in cpu_server0 + cpu_server1 and wall > 0:
        used = sum(b - a for a, b in zip(cpu_server0, cpu_server1, strict=True) if a and b)
        result.server_cpu_pct = 100 * used / wall
        if received:
            result.server_cpu_us_per_msg = 1e6 * used / len(received)
    result.client_cpu_pct = 100 * cpu_client / wall if wall > 0 else None

    rate = light_rate(result) if callable(light_rate) else light_rate
    if rate:
        print(
            f"[{kind}] light load {rate:,.0f} msg/s open loop for {cfg.light_s:g} s…",
            file=progress,
        )
        light_profile = profile / f"{kind}-light.txt" if profile else None
        async with recording(server_pids[0], light_profile):
            result.light = await run_open_loop(pairs, tracker, cfg, rate, server_pids)


async def bench_system(
    kind: str,
    cfg: Config,
    tmpdir: Path,
    progress: TextIO,
    light_rate: LightRate = None,
    profile: Path | None = None,
) -> SystemResult:
    """Run ``kind`` ("baseline" or "hubbub"): start its server (hubbub: on a SQLite
    database seeded with the bench users), then every phase, then stop it."""
    result = SystemResult(kind)
    tracker = Tracker()
    names = pair_names(cfg.pairs)
    idle = idle_names(cfg.idle)
    t0 = time.perf_counter()
    if kind == "hubbub":
        print(f"[{kind}] seeding {len(names) + len(idle)} users…", file=progress)
        database = tmpdir / "bench.db"
        tokens = await seed_database(open_sqlite(database), names + idle)
        server = await start_server_process(kind, tmpdir, database=database)
    else:
        tokens = {n: n for n in names + idle}
        server = await start_server_process(kind, tmpdir, relay=True)
    peers: list[Peer] = []
    idle_peers: list[Peer] = []
    try:
        peers = [
            Peer(n, tokens[n], server.address, tracker, cfg.ack_every, batching=kind == "hubbub")
            for n in names
        ]
        for peer in peers:
            await peer.connect()
        pairs = [(peers[2 * i], peers[2 * i + 1]) for i in range(cfg.pairs)]
        result.setup_s = time.perf_counter() - t0
        await run_load_phases(
            result, pairs, tracker, cfg, [server.pid], light_rate, progress, profile
        )
        if idle:
            print(f"[{kind}] idle: {len(idle)} streams that send nothing…", file=progress)
            idle_peers = [Peer(n, tokens[n], server.address, tracker, 1) for n in idle]
            result.idle, idle_peers = await run_idle(idle_peers, server.pid, cfg)
    finally:
        await asyncio.gather(*(peer.close() for peer in peers + idle_peers))
        await stop_reporting(server, progress)
    result.integrity = tracker.finish()
    return result


async def stop_reporting(server: ServerProcess, progress: TextIO) -> None:
    """Stop ``server``; print its log tail if it did not exit cleanly."""
    code = await stop_server_process(server)
    if code not in (0, -signal.SIGTERM):
        print(f"[{server.name}] server exited with {code}:\n{server.log_tail()}", file=progress)
