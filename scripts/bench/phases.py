"""The measured phases, each over already connected peers of one server."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from .config import DRAIN_TIMEOUT_S, EVENT_TIMEOUT_S, Config
from .peer import Peer, make_body
from .procstat import process_cpu_split_s, process_rss_bytes
from .stats import latency_summary
from .tracker import Tracker


async def run_window_phase(
    senders: list[tuple[Peer, Peer]], tracker: Tracker, cfg: Config, prefix: str, per_pair: int
) -> tuple[list[str], bool]:
    """Each (sender, receiver) pair sends ``per_pair`` messages with ``cfg.window`` in flight.

    Stops sending at ``cfg.phase_cap_s`` seconds, then waits ≤ DRAIN_TIMEOUT_S s for
    the rest. Returns the client ids sent and whether the time cap was hit.
    """
    tracker.begin_phase()
    deadline = time.monotonic() + cfg.phase_cap_s
    sent: list[list[str]] = [[] for _ in senders]
    capped = False

    async def pump(index: int, sender: Peer, receiver: Peer) -> None:
        """Send this pair's messages, waiting ≤ EVENT_TIMEOUT_S s for each window slot."""
        nonlocal capped
        sender.window = asyncio.Semaphore(cfg.window)
        for i in range(per_pair):
            if time.monotonic() > deadline:
                capped = True
                return
            try:
                await asyncio.wait_for(sender.window.acquire(), EVENT_TIMEOUT_S)
            except TimeoutError:
                capped = True
                return
            client_id = f"{prefix}-{index}-{i}"
            await sender.send(receiver.name, client_id, make_body(client_id, cfg.body_bytes))
            sent[index].append(client_id)

    await asyncio.gather(*(pump(i, s, r) for i, (s, r) in enumerate(senders)))
    ids = [cid for chunk in sent for cid in chunk]
    tracker.end_sending(len(ids))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(tracker.phase_done.wait(), DRAIN_TIMEOUT_S)
    return ids, capped


async def run_pingpong(sender: Peer, receiver: Peer, tracker: Tracker, cfg: Config) -> list[str]:
    """Send ``cfg.pingpong`` messages one at a time, each after the previous one's
    receipt and send_result (each wait ≤ EVENT_TIMEOUT_S s). Returns the client ids."""
    sender.window = asyncio.Semaphore(1_000_000)  # the window is not used here
    ids: list[str] = []
    deadline = time.monotonic() + cfg.phase_cap_s
    for i in range(cfg.pingpong):
        if time.monotonic() > deadline:
            break
        client_id = f"ping-{i}"
        got = tracker.waiter(client_id)
        answered = tracker.waiter("result:" + client_id)
        await sender.send(receiver.name, client_id, make_body(client_id, cfg.body_bytes))
        ids.append(client_id)
        try:
            await asyncio.wait_for(asyncio.gather(got, answered), EVENT_TIMEOUT_S)
        except TimeoutError:
            break
    return ids


DRAIN_STALL_S = 5.0  # an overloaded system still delivering: stop when this long without progress
DRAIN_MAX_S = 180.0  # and in any case after this long, seconds


async def drain(tracker: Tracker) -> None:
    """Wait for the phase's messages and results while they keep coming: stop when all
    arrived, after ``DRAIN_STALL_S`` s without a new one, or after ``DRAIN_MAX_S`` s.

    An open loop can offer more than a slow system (a cluster) takes; its backlog
    is then delivered late, not lost, and is waited for.
    """
    deadline = time.monotonic() + DRAIN_MAX_S
    seen = -1
    while time.monotonic() < deadline:
        progress = tracker.phase_received + tracker.phase_results
        if progress == seen:
            return
        seen = progress
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tracker.phase_done.wait(), DRAIN_STALL_S)
            return


@dataclass
class LightLoad:
    """Figures of an open-loop phase at a fixed offered rate.

    Attributes:
        rate_msg_s: offered rate (msg/s over all pairs).
        messages: messages received by their recipient.
        sent: messages written.
        server_cpu_us_per_msg: server CPU (user+system) per received message, µs.
        server_user_pct: share of that CPU spent in user mode, %.
        e2e: send written → message read at the recipient, ms percentiles.
        send_lag_p99_ms: p99 of (write time - scheduled time): > ~1 ms means the
            client could not keep the schedule and the rate is not the offered one.
    """

    rate_msg_s: float = 0.0
    messages: int = 0
    sent: int = 0
    server_cpu_us_per_msg: float | None = None
    server_user_pct: float | None = None
    e2e: dict[str, float | None] | None = None
    send_lag_p99_ms: float | None = None


async def run_open_loop(
    pairs: list[tuple[Peer, Peer]],
    tracker: Tracker,
    cfg: Config,
    rate_msg_s: float,
    server_pids: list[int],
    prefix: str = "light",
) -> LightLoad:
    """Open loop: send at ``rate_msg_s`` msg/s in total for ``cfg.light_s`` s, spread over
    the pairs (each pair at rate/K, evenly staggered), never waiting for answers.

    Server CPU is summed over ``server_pids`` (one per node) from the first send to
    the last receipt (or until :func:`drain` gives up).
    """
    tracker.begin_phase()
    k = len(pairs)
    interval_s = k / rate_msg_s  # between two sends of one pair
    per_pair = max(1, int(cfg.light_s * rate_msg_s / k))
    lags: list[int] = []
    sent: list[str] = []
    for sender, _ in pairs:
        sender.window = asyncio.Semaphore(1_000_000)  # open loop: no window

    async def pump(index: int, sender: Peer, receiver: Peer, start: float) -> None:
        """Send this pair's messages at their scheduled times."""
        loop = asyncio.get_running_loop()
        for i in range(per_pair):
            due = start + index * interval_s / k + i * interval_s
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            client_id = f"{prefix}-{index}-{i}"
            lags.append(int((loop.time() - due) * 1e9))
            await sender.send(receiver.name, client_id, make_body(client_id, cfg.body_bytes))
            sent.append(client_id)

    cpu0 = [process_cpu_split_s(pid) for pid in server_pids]
    start = asyncio.get_running_loop().time() + 0.05
    await asyncio.gather(*(pump(i, s, r, start) for i, (s, r) in enumerate(pairs)))
    tracker.end_sending(len(sent))
    await drain(tracker)
    cpu1 = [process_cpu_split_s(pid) for pid in server_pids]
    received = [c for c in sent if c in tracker.received_at]
    result = LightLoad(rate_msg_s=rate_msg_s, messages=len(received), sent=len(sent))
    result.e2e = latency_summary([tracker.received_at[c] - tracker.sent_at[c] for c in received])
    result.send_lag_p99_ms = latency_summary(lags).get("p99_ms")
    if received and all(c is not None for c in cpu0 + cpu1):
        user = sum(b[0] - a[0] for a, b in zip(cpu0, cpu1, strict=True) if a and b)
        system = sum(b[1] - a[1] for a, b in zip(cpu0, cpu1, strict=True) if a and b)
        result.server_cpu_us_per_msg = 1e6 * (user + system) / len(received)
        result.server_user_pct = 100 * user / (user + system) if user + system > 0 else None
    return result


QUIET_CPU_FRACTION = 0.05  # "settled": server and client each below 5% of a core
SETTLE_STEP_S = 0.5


async def settle(server_pid: int, min_s: float, max_s: float) -> float:
    """Wait at least ``min_s`` s, then until the server and this client process each use
    under ``QUIET_CPU_FRACTION`` of a core over ``SETTLE_STEP_S`` s (queued presence
    events written and read), at most ``max_s`` s. Returns the seconds waited."""
    t0 = time.monotonic()
    await asyncio.sleep(min_s)
    while time.monotonic() - t0 < max_s:
        server0, client0 = process_cpu_split_s(server_pid), time.process_time()
        await asyncio.sleep(SETTLE_STEP_S)
        server1, client1 = process_cpu_split_s(server_pid), time.process_time()
        server_used = sum(server1) - sum(server0) if server0 and server1 else 0.0
        limit = QUIET_CPU_FRACTION * SETTLE_STEP_S
        if server_used < limit and client1 - client0 < limit:
            break
    return time.monotonic() - t0


@dataclass
class IdleStreams:
    """Figures of the idle phase.

    Attributes:
        streams: idle streams open when RSS was read.
        wanted: idle streams asked for.
        rss_before_bytes / rss_after_bytes: server RSS before opening them and after.
        rss_per_stream_kb: (after - before) / streams, KiB.
        connect_s: time to open them all (welcome read, resume written).
        settle_s: wait after that until server and client were quiet (:func:`settle`).
    """

    streams: int = 0
    wanted: int = 0
    rss_before_bytes: int | None = None
    rss_after_bytes: int | None = None
    rss_per_stream_kb: float | None = None
    connect_s: float | None = None
    settle_s: float | None = None


async def open_streams(peers: list[Peer], concurrency: int, deadline: float) -> list[Peer]:
    """Connect ``peers`` (≤ ``concurrency`` handshakes at once) until ``deadline``
    (``time.monotonic()``); returns those connected. A failed connect is skipped."""
    limit = asyncio.Semaphore(concurrency)
    connected: list[Peer] = []

    async def one(peer: Peer) -> None:
        """Connect one peer unless the deadline passed."""
        async with limit:
            if time.monotonic() > deadline:
                return
            try:
                await peer.connect()
            except Exception:  # a refused or timed-out stream: counted as not connected
                await peer.close()
                return
            connected.append(peer)

    await asyncio.gather(*(one(p) for p in peers))
    return connected


async def run_idle(
    peers: list[Peer], server_pid: int, cfg: Config
) -> tuple[IdleStreams, list[Peer]]:
    """Open ``peers`` as idle Chat streams (they send nothing but acks), let the server
    settle ``cfg.idle_settle_s`` s, and read its RSS delta. Returns the figures and the
    connected peers (the caller closes them)."""
    result = IdleStreams(wanted=len(peers))
    result.rss_before_bytes = process_rss_bytes(server_pid)
    t0 = time.perf_counter()
    connected = await open_streams(peers, 16, time.monotonic() + cfg.phase_cap_s)
    result.connect_s = time.perf_counter() - t0
    result.settle_s = await settle(server_pid, cfg.idle_settle_s, cfg.phase_cap_s)
    result.streams = len(connected)
    result.rss_after_bytes = process_rss_bytes(server_pid)
    if result.streams and result.rss_before_bytes and result.rss_after_bytes:
        delta = result.rss_after_bytes - result.rss_before_bytes
        result.rss_per_stream_kb = delta / result.streams / 1024
    return result, connected
