"""Hubbub benchmark: the real server against a bare grpc.aio relay on the same stack.

``make bench`` runs this file. It starts two servers, one after the other, each
as a subprocess on 127.0.0.1 (so client and server do not share a GIL):

* **baseline**: this file in ``--baseline-server`` mode, a minimal
  ``hubbub.v1.MessengerService/Chat`` that relays every ``send`` straight into
  the recipient's stream through an in-memory :class:`asyncio.Queue` and
  answers the sender with an immediate ``send_result``. No storage, no auth
  (the bearer token *is* the username), no limits. It builds the same protobuf
  events as Hubbub, so the wire traffic is the same size.
* **hubbub**: ``hubbub-server --port 0 --database <tmp>/bench.db``.

Against each it runs the same client (one channel and one Chat stream per
user): K sender/receiver pairs, a warm-up, then

1. latency: one-at-a-time ping-pong on pair 0 (send → receipt at the
   recipient, and send → ``send_result``), in ms;
2. throughput: every sender sends its share of N messages with at most W
   unanswered sends (``send_result`` frees a slot); messages/s from the first
   send to the last receipt. Receivers ack cumulatively.

Every message is tracked by client id: lost, duplicated, unexpected or
corrupted messages make the exit status non-zero. Timing is never asserted.
Every wait is bounded; a phase that runs past its time cap stops sending and
reports how many messages it managed.

Usage: ``python scripts/bench.py [--quick] [--json] [--pairs K] [--messages N]``.
Exit status: 0 ok, 1 messages lost/duplicated/corrupted, 2 setup failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import grpc
from google.protobuf.internal import api_implementation
from google.protobuf.timestamp_pb2 import Timestamp

from hubbub.v1 import messenger_pb2 as pb
from hubbub.v1 import messenger_pb2_grpc as pb_grpc

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
    uvloop = None  # type: ignore[assignment]

HOST = "127.0.0.1"
PASSWORD = "bench password 123"
START_TIMEOUT_S = 20.0  # server start-up, seconds
STOP_TIMEOUT_S = 10.0  # server shutdown after SIGTERM, seconds
RPC_TIMEOUT_S = 20.0  # one unary call (Register/Login, argon2id), seconds
EVENT_TIMEOUT_S = 10.0  # one awaited stream event (welcome, window slot, ping-pong), seconds
DRAIN_TIMEOUT_S = 30.0  # waiting for in-flight messages after the last send, seconds
# ChatResponse events that are inbox entries (carry a per-user ``sequence``).
INBOX_KINDS = frozenset({"message", "delivery_receipt", "group_update"})


# --------------------------------------------------------------------------- baseline server


def _timestamp_now() -> Timestamp:
    """The current time as a protobuf Timestamp (ms resolution, as Hubbub stores it)."""
    ts = Timestamp()
    ts.FromMilliseconds(time.time_ns() // 1_000_000)
    return ts


class RelayServicer(pb_grpc.MessengerServiceServicer):
    """Stack baseline: relays ``send`` events between Chat streams through memory.

    Per stream: a reader task turns client events into server events and a
    writer loop drains the stream's queue, the same shape as Hubbub's
    transport minus storage, auth, presence and limits. Queues are unbounded;
    the benchmark client's send window bounds them.
    """

    def __init__(self) -> None:
        """Empty relay: user → outbound queue, recipient → last sequence."""
        self.queues: dict[str, asyncio.Queue[pb.ChatResponse | None]] = {}
        self.sequences: dict[str, int] = {}
        self.next_message_id = 0

    async def Chat(  # type: ignore[override]
        self, request_iterator: AsyncIterator[pb.ChatRequest], context: Any
    ) -> None:
        """Relay this stream's sends; write whatever is queued for its user."""
        user = _bearer(context.invocation_metadata()) or "anonymous"
        queue: asyncio.Queue[pb.ChatResponse | None] = asyncio.Queue()
        self.queues[user] = queue
        queue.put_nowait(pb.ChatResponse(welcome=pb.Welcome(user=pb.User(username=user))))
        reader = asyncio.create_task(self._read(user, request_iterator, queue))
        try:
            while True:
                event = await queue.get()
                if event is None:
                    return
                await context.write(event)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            if self.queues.get(user) is queue:
                del self.queues[user]

    async def _read(
        self,
        user: str,
        requests: AsyncIterator[pb.ChatRequest],
        queue: asyncio.Queue[pb.ChatResponse | None],
    ) -> None:
        """Turn this stream's events into queued server events until it ends."""
        try:
            async for request in requests:
                kind = request.WhichOneof("event")
                if kind == "send":
                    self._relay(user, request.send, queue)
                elif kind == "ping":
                    queue.put_nowait(pb.ChatResponse(pong=pb.Pong(nonce=request.ping.nonce)))
                # resume and ack need no work: nothing is stored.
        finally:
            queue.put_nowait(None)  # half-close or broken call: end the writer

    def _relay(
        self, user: str, send: pb.SendMessage, queue: asyncio.Queue[pb.ChatResponse | None]
    ) -> None:
        """Queue the message for its recipient and an immediate send_result for the sender."""
        target = self.queues.get(send.recipient)
        if target is None:
            queue.put_nowait(
                pb.ChatResponse(
                    error=pb.Error(client_id=send.client_id, code=5, reason="USER_NOT_FOUND")
                )
            )
            return
        sequence = self.sequences.get(send.recipient, 0) + 1
        self.sequences[send.recipient] = sequence
        self.next_message_id += 1
        now = _timestamp_now()
        target.put_nowait(
            pb.ChatResponse(
                message=pb.Message(
                    sequence=sequence,
                    message_id=self.next_message_id,
                    sender=user,
                    sender_display_name=user,
                    recipient=send.recipient,
                    body=send.body,
                    send_time=now,
                    client_id=send.client_id,
                )
            )
        )
        queue.put_nowait(
            pb.ChatResponse(
                send_result=pb.SendResult(
                    client_id=send.client_id,
                    message_id=self.next_message_id,
                    sequence=sequence,
                    send_time=now,
                    recipient_online=True,
                    recipient=send.recipient,
                )
            )
        )


def _bearer(metadata: Any) -> str | None:
    """The token of an ``authorization: Bearer <token>`` metadata entry, if any."""
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            return value[len("Bearer ") :]
    return None


async def serve_baseline(port: int) -> None:
    """Run the relay on 127.0.0.1:``port`` until SIGTERM/SIGINT; prints ``listening on``."""
    server = grpc.aio.server()
    pb_grpc.add_MessengerServiceServicer_to_server(RelayServicer(), server)
    bound = server.add_insecure_port(f"{HOST}:{port}")
    await server.start()
    print(f"listening on {HOST}:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1.0)


# --------------------------------------------------------------------------- measurements


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank ``q``-th percentile (0-100) of ascending values; None if empty."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def latency_summary(samples_ns: list[int]) -> dict[str, float | None]:
    """p50/p95/p99/max in ms of latency samples given in ns."""
    values = sorted(s / 1e6 for s in samples_ns)
    return {
        "p50_ms": percentile(values, 50),
        "p95_ms": percentile(values, 95),
        "p99_ms": percentile(values, 99),
        "max_ms": values[-1] if values else None,
    }


def process_cpu_s(pid: int) -> float | None:
    """User+system CPU seconds used so far by process ``pid`` (Linux /proc), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Integrity:
    """Message accounting for one system: every count except ``sent``/``received`` should be 0."""

    sent: int = 0
    received: int = 0
    send_results: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0
    corrupt: int = 0
    errors: int = 0
    out_of_order: int = 0
    receipts: int = 0  # delivery receipts read by senders (Hubbub only; informational)
    broken_streams: int = 0  # Chat calls that ended with an error status

    @property
    def ok(self) -> bool:
        """True if nothing was lost, duplicated, unexpected or corrupted."""
        return not (
            self.lost or self.duplicated or self.unexpected or self.corrupt or self.broken_streams
        )


class Tracker:
    """Send/receive bookkeeping by client id, with times in ns (``time.perf_counter_ns``)."""

    def __init__(self) -> None:
        """Nothing sent yet."""
        self.sent_at: dict[str, int] = {}
        self.body: dict[str, str] = {}
        self.recipient: dict[str, str] = {}
        self.received_at: dict[str, int] = {}
        self.result_at: dict[str, int] = {}
        self.integrity = Integrity()
        self.waiters: dict[str, asyncio.Future[None]] = {}
        self.phase_expect = 0  # messages (and results) the current phase waits for
        self.phase_received = 0
        self.phase_results = 0
        self.phase_done = asyncio.Event()

    def begin_phase(self) -> None:
        """Start counting receipts and send results for a new phase."""
        self.phase_expect = -1  # unknown until every sender is done
        self.phase_received = 0
        self.phase_results = 0
        self.phase_done.clear()

    def end_sending(self, total_sent: int) -> None:
        """Every sender of the phase is done; ``total_sent`` messages were written."""
        self.phase_expect = total_sent
        self._check_phase()

    def _check_phase(self) -> None:
        """Set ``phase_done`` once every message of the phase is received and answered."""
        if (
            self.phase_expect >= 0
            and self.phase_received >= self.phase_expect
            and self.phase_results >= self.phase_expect
        ):
            self.phase_done.set()

    def on_send(self, client_id: str, recipient: str, body: str, now_ns: int) -> None:
        """A send event was written."""
        self.sent_at[client_id] = now_ns
        self.body[client_id] = body
        self.recipient[client_id] = recipient
        self.integrity.sent += 1

    def on_message(self, reader: str, client_id: str, body: str, now_ns: int) -> None:
        """A message event arrived at ``reader``; it must be the recipient."""
        if client_id not in self.sent_at or self.recipient[client_id] != reader:
            self.integrity.unexpected += 1
            return
        if client_id in self.received_at:
            self.integrity.duplicated += 1
            return
        self.received_at[client_id] = now_ns
        self.integrity.received += 1
        if self.body[client_id] != body:
            self.integrity.corrupt += 1
        self.phase_received += 1
        self._wake(client_id)
        self._check_phase()

    def on_result(self, client_id: str, now_ns: int, error: bool = False) -> None:
        """A send_result (or an error) for one of our sends arrived."""
        if client_id in self.result_at or client_id not in self.sent_at:
            return
        self.result_at[client_id] = now_ns
        self.integrity.send_results += not error
        self.integrity.errors += error
        self.phase_results += 1
        self._wake("result:" + client_id)
        self._check_phase()

    def _wake(self, key: str) -> None:
        """Resolve the ping-pong waiter for ``key``, if any."""
        waiter = self.waiters.pop(key, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def waiter(self, key: str) -> asyncio.Future[None]:
        """A future set when ``key`` (a client id, or ``result:<client id>``) happens."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters[key] = fut
        return fut

    def finish(self) -> Integrity:
        """Count the lost messages (sent, never received) and return the totals."""
        self.integrity.lost = sum(1 for cid in self.sent_at if cid not in self.received_at)
        return self.integrity


class Peer:
    """One user: its own channel and Chat stream, a reader task and a send window."""

    def __init__(
        self, name: str, token: str, address: str, tracker: Tracker, ack_every: int
    ) -> None:
        """A peer for user ``name`` (bearer ``token``) on ``address``; acks every
        ``ack_every`` inbox entries."""
        self.name = name
        self.token = token
        self.address = address
        self.tracker = tracker
        self.ack_every = ack_every
        self.channel: grpc.aio.Channel | None = None
        self.call: Any = None
        self.reader: asyncio.Task[None] | None = None
        self.write_lock = asyncio.Lock()
        self.window: asyncio.Semaphore = asyncio.Semaphore(1)
        self.last_sequence = 0
        self.acked_sequence = 0
        self.last_order_sequence = 0

    async def connect(self) -> None:
        """Open the channel and the Chat stream, read Welcome, send Resume, start reading."""
        self.channel = grpc.aio.insecure_channel(self.address)
        stub = pb_grpc.MessengerServiceStub(self.channel)
        self.call = stub.Chat(metadata=(("authorization", f"Bearer {self.token}"),))
        first = await asyncio.wait_for(self.call.read(), EVENT_TIMEOUT_S)
        if first is grpc.aio.EOF or first.WhichOneof("event") != "welcome":
            raise RuntimeError(f"{self.name}: expected welcome, got {first!r}")
        self.last_sequence = self.acked_sequence = first.welcome.acked_sequence
        await self.write(pb.ChatRequest(resume=pb.Resume()))
        self.reader = asyncio.create_task(self._read_loop(), name=f"reader-{self.name}")

    async def write(self, request: pb.ChatRequest) -> None:
        """Write one event (writes on one call are serialised)."""
        async with self.write_lock:
            await self.call.write(request)

    async def send(self, recipient: str, client_id: str, body: str) -> None:
        """Write a send event and note its send time."""
        request = pb.ChatRequest(
            send=pb.SendMessage(client_id=client_id, recipient=recipient, body=body)
        )
        async with self.write_lock:
            self.tracker.on_send(client_id, recipient, body, time.perf_counter_ns())
            await self.call.write(request)

    async def _read_loop(self) -> None:
        """Read events until EOF; a broken stream is counted and ends the phase early."""
        try:
            await self._dispatch_events()
        except grpc.aio.AioRpcError as exc:
            self.tracker.integrity.broken_streams += 1
            self.tracker.phase_done.set()  # messages will be missing: stop waiting for them
            print(
                f"bench: stream of {self.name} broke: {exc.code().name} {exc.details()}",
                file=sys.stderr,
            )

    async def _dispatch_events(self) -> None:
        """Route each event to the tracker; ack inbox entries cumulatively."""
        tracker = self.tracker
        while True:
            event = await self.call.read()
            now = time.perf_counter_ns()
            if event is grpc.aio.EOF:
                return
            kind = event.WhichOneof("event")
            if kind in INBOX_KINDS:  # an inbox entry: check its sequence, ack cumulatively
                entry = getattr(event, kind)
                if kind == "message":
                    tracker.on_message(self.name, entry.client_id, entry.body, now)
                elif kind == "delivery_receipt":
                    tracker.integrity.receipts += 1
                if self.last_order_sequence and entry.sequence != self.last_order_sequence + 1:
                    tracker.integrity.out_of_order += 1
                self.last_order_sequence = entry.sequence
                self.last_sequence = max(self.last_sequence, entry.sequence)
                if self.last_sequence - self.acked_sequence >= self.ack_every:
                    await self.ack()
            elif kind == "send_result":
                tracker.on_result(event.send_result.client_id, now)
                self.window.release()
            elif kind == "error":
                tracker.on_result(event.error.client_id, now, error=True)
                if event.error.client_id:
                    self.window.release()

    async def ack(self) -> None:
        """Acknowledge cumulatively everything received so far."""
        if self.last_sequence > self.acked_sequence:
            self.acked_sequence = self.last_sequence
            await self.write(pb.ChatRequest(ack=pb.Ack(sequence=self.acked_sequence)))

    async def close(self) -> None:
        """Final ack, half-close, wait (bounded) for the server to end the call, close."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ack(), EVENT_TIMEOUT_S)
            async with self.write_lock:
                await asyncio.wait_for(self.call.done_writing(), EVENT_TIMEOUT_S)
        if self.reader is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self.reader), 2.0)
            self.reader.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self.reader
        if self.call is not None:
            self.call.cancel()
        if self.channel is not None:
            await self.channel.close()


def make_body(client_id: str, size: int) -> str:
    """A deterministic ASCII body of ``size`` bytes that embeds ``client_id``."""
    head = client_id + "|"
    return (head + "x" * max(0, size - len(head)))[: max(size, 1)]


# --------------------------------------------------------------------------- servers


@dataclass
class ServerProcess:
    """A server subprocess with its address and stderr log."""

    name: str
    proc: asyncio.subprocess.Process
    address: str
    log_path: Path
    log_file: TextIO

    async def stop(self) -> int | None:
        """SIGTERM, wait up to STOP_TIMEOUT_S seconds, then SIGKILL; returns the exit code."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                self.proc.kill()
                await asyncio.wait_for(self.proc.wait(), STOP_TIMEOUT_S)
        self.log_file.close()
        return self.proc.returncode

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the server's stderr."""
        self.log_file.flush()
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def _open_log(path: Path) -> TextIO:
    """Open a server's stderr log (sync: kept out of the event loop's coroutines)."""
    return path.open("w")


def server_command(kind: str, tmpdir: Path) -> list[str]:
    """The argv that starts the ``kind`` ("baseline" or "hubbub") server on a free port."""
    if kind == "baseline":
        return [sys.executable, str(Path(__file__).resolve()), "--baseline-server"]
    exe = Path(sys.executable).parent / "hubbub-server"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "hubbub.server.cli"]
    return [
        *cmd,
        "--host",
        HOST,
        "--port",
        "0",
        "--database",
        str(tmpdir / "bench.db"),
        "--log-level",
        "WARNING",
        "--grace",
        "2",
        # every bench user registers and logs in from this one address
        "--register-limit",
        "1000000 per hour",
        "--login-address-limit",
        "1000000 per 15 minutes",
    ]


async def start_server_process(kind: str, tmpdir: Path) -> ServerProcess:
    """Start a server subprocess and wait (≤ START_TIMEOUT_S s) for ``listening on H:P``."""
    log_path = tmpdir / f"{kind}-server.log"
    log_file = _open_log(log_path)
    proc = await asyncio.create_subprocess_exec(
        *server_command(kind, tmpdir),
        stdout=asyncio.subprocess.PIPE,
        stderr=log_file,
        stdin=asyncio.subprocess.DEVNULL,
    )
    server = ServerProcess(kind, proc, "", log_path, log_file)
    assert proc.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            line = await asyncio.wait_for(
                proc.stdout.readline(), max(0.1, deadline - time.monotonic())
            )
            if not line:
                break
            text = line.decode(errors="replace").strip()
            if text.startswith("listening on "):
                _, port = text.removeprefix("listening on ").rsplit(":", 1)
                server.address = f"{HOST}:{int(port)}"
                return server
    except TimeoutError:
        pass
    await server.stop()
    raise RuntimeError(f"{kind} server did not start:\n{server.log_tail()}")


async def register_all(address: str, names: list[str]) -> dict[str, str]:
    """Register and log in ``names`` on Hubbub (argon2id, ~60 ms each); name → token."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.MessengerServiceStub(channel)
        limit = asyncio.Semaphore(4)

        async def one(name: str) -> tuple[str, str]:
            """Register then log in ``name``; returns (name, token)."""
            async with limit:
                await stub.Register(
                    pb.RegisterRequest(username=name, password=PASSWORD), timeout=RPC_TIMEOUT_S
                )
                reply = await stub.Login(
                    pb.LoginRequest(username=name, password=PASSWORD), timeout=RPC_TIMEOUT_S
                )
                return name, reply.token

        return dict(await asyncio.gather(*(one(n) for n in names)))


# --------------------------------------------------------------------------- phases


@dataclass
class Config:
    """Benchmark settings (sizes in bytes, times in seconds)."""

    pairs: int = 8
    messages: int = 20_000
    window: int = 64
    body_bytes: int = 128
    pingpong: int = 500
    warmup: int = 50  # messages per pair before any timing
    ack_every: int = 32
    phase_cap_s: float = 40.0


@dataclass
class SystemResult:
    """Figures for one server: rates in msg/s, latencies in ms, CPU in % and µs/msg."""

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
    integrity: Integrity = field(default_factory=Integrity)


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


async def bench_system(kind: str, cfg: Config, tmpdir: Path, progress: TextIO) -> SystemResult:
    """Start the ``kind`` server, run warm-up, ping-pong and throughput, stop it."""
    result = SystemResult(kind)
    tracker = Tracker()
    server = await start_server_process(kind, tmpdir)
    peers: list[Peer] = []
    try:
        t0 = time.perf_counter()
        names = [f"bench_{role}{i}" for i in range(cfg.pairs) for role in ("s", "r")]
        if kind == "hubbub":
            print(f"[{kind}] registering {len(names)} users (argon2id)…", file=progress)
            tokens = await register_all(server.address, names)
        else:
            tokens = {n: n for n in names}
        peers = [Peer(n, tokens[n], server.address, tracker, cfg.ack_every) for n in names]
        for peer in peers:
            await peer.connect()
        pairs = [(peers[2 * i], peers[2 * i + 1]) for i in range(cfg.pairs)]
        result.setup_s = time.perf_counter() - t0

        print(f"[{kind}] warm-up {cfg.warmup * cfg.pairs} messages…", file=progress)
        await run_window_phase(pairs, tracker, cfg, "warm", cfg.warmup)

        print(f"[{kind}] ping-pong {cfg.pingpong} messages…", file=progress)
        ping_ids = await run_pingpong(pairs[0][0], pairs[0][1], tracker, cfg)
        result.pingpong = latency_summary(
            [
                tracker.received_at[c] - tracker.sent_at[c]
                for c in ping_ids
                if c in tracker.received_at
            ]
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
        cpu_server0 = process_cpu_s(server.proc.pid)
        cpu_client0 = time.process_time()
        wall0 = time.perf_counter()
        ids, capped = await run_window_phase(pairs, tracker, cfg, "load", per_pair)
        wall = time.perf_counter() - wall0
        cpu_server1 = process_cpu_s(server.proc.pid)
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
        if cpu_server0 is not None and cpu_server1 is not None and wall > 0:
            result.server_cpu_pct = 100 * (cpu_server1 - cpu_server0) / wall
            if received:
                result.server_cpu_us_per_msg = 1e6 * (cpu_server1 - cpu_server0) / len(received)
        result.client_cpu_pct = 100 * cpu_client / wall if wall > 0 else None
    finally:
        for peer in peers:
            await peer.close()
        code = await server.stop()
        if code not in (0, -signal.SIGTERM):
            print(f"[{kind}] server exited with {code}:\n{server.log_tail()}", file=progress)
    result.integrity = tracker.finish()
    return result


# --------------------------------------------------------------------------- report


def machine_facts() -> dict[str, Any]:
    """Cores, platform, Python, grpcio/protobuf/uvloop/SQLite versions."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "protobuf_impl": api_implementation.Type(),
        "uvloop": getattr(uvloop, "__version__", None) if uvloop is not None else None,
        "sqlite": sqlite3.sqlite_version,
        "hubbub_revision": source_revision(),
    }


def source_revision() -> str | None:
    """``git describe``-style revision of the checkout, ``+dirty`` if server/protos changed."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "server", "protos"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def _loadavg_1m() -> float | None:
    """The 1-minute load average (runnable processes), a hint of other work on the machine."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, or None if either is missing or ``b`` is 0."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def figures(r: SystemResult) -> dict[str, float | None]:
    """The compared figures of one system: msg/s, ms, % and µs/msg."""
    return {
        "throughput_msg_s": r.throughput_msg_s,
        "pingpong_p50_ms": r.pingpong.get("p50_ms"),
        "pingpong_p95_ms": r.pingpong.get("p95_ms"),
        "pingpong_p99_ms": r.pingpong.get("p99_ms"),
        "send_ack_p50_ms": r.pingpong_ack.get("p50_ms"),
        "send_ack_p99_ms": r.pingpong_ack.get("p99_ms"),
        "load_send_ack_p50_ms": r.load_ack.get("p50_ms"),
        "load_send_ack_p99_ms": r.load_ack.get("p99_ms"),
        "load_e2e_p50_ms": r.load_e2e.get("p50_ms"),
        "load_e2e_p99_ms": r.load_e2e.get("p99_ms"),
        "server_cpu_us_per_msg": r.server_cpu_us_per_msg,
        "server_cpu_pct": r.server_cpu_pct,
        "client_cpu_pct": r.client_cpu_pct,
    }


LABELS = {
    "throughput_msg_s": "throughput (msg/s)",
    "pingpong_p50_ms": "ping-pong e2e p50 (ms)",
    "pingpong_p95_ms": "ping-pong e2e p95 (ms)",
    "pingpong_p99_ms": "ping-pong e2e p99 (ms)",
    "send_ack_p50_ms": "send->send_result p50 (ms) [1]",
    "send_ack_p99_ms": "send->send_result p99 (ms) [1]",
    "load_send_ack_p50_ms": "under load: send->result p50 (ms)",
    "load_send_ack_p99_ms": "under load: send->result p99 (ms)",
    "load_e2e_p50_ms": "under load: e2e p50 (ms)",
    "load_e2e_p99_ms": "under load: e2e p99 (ms)",
    "server_cpu_us_per_msg": "server CPU per message (us)",
    "server_cpu_pct": "server CPU during load (%)",
    "client_cpu_pct": "client CPU during load (%) [2]",
}


def _fmt(value: float | None, digits: int = 2) -> str:
    """A table cell: ``-`` for missing, thousands separators from 1000 up."""
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def render_table(
    cfg: Config, machine: dict[str, Any], base: SystemResult, hub: SystemResult
) -> str:
    """The human-readable report."""
    fb, fh = figures(base), figures(hub)
    lines = [
        f"Hubbub bench: {cfg.pairs} pairs, {hub.throughput_messages} msgs (hubbub) / "
        f"{base.throughput_messages} (baseline), window {cfg.window}, body {cfg.body_bytes} B, "
        f"ping-pong {cfg.pingpong}, ack every {cfg.ack_every}",
        f"machine: {machine['cpu_count']} cores (affinity {machine['cpu_affinity']}), "
        f"{machine['platform']}, Python {machine['python']}, grpcio {machine['grpcio']}, "
        f"protobuf {machine['protobuf_impl']}, uvloop "
        f"{machine['uvloop'] or 'no'} (client and both servers), SQLite {machine['sqlite']}, "
        f"hubbub {machine['hubbub_revision'] or '?'}, load avg 1m "
        f"{_fmt(machine['loadavg_1m_start'])} -> {_fmt(machine['loadavg_1m_end'])}",
        "",
        f"{'figure':<36}{'baseline':>12}{'hubbub':>12}{'hubbub/baseline':>18}",
        "-" * 78,
    ]
    for key, label in LABELS.items():
        r = ratio(fh[key], fb[key])
        lines.append(
            f"{label:<36}{_fmt(fb[key]):>12}{_fmt(fh[key]):>12}"
            f"{(_fmt(r) + 'x') if r is not None else '-':>18}"
        )
    lines.append("-" * 78)
    for res in (base, hub):
        i = res.integrity
        cap = " TIME-CAPPED" if res.throughput_capped else ""
        lines.append(
            f"{res.name:<9} sent {i.sent} received {i.received} results {i.send_results} | "
            f"lost {i.lost} dup {i.duplicated} unexpected {i.unexpected} corrupt {i.corrupt} "
            f"errors {i.errors} out-of-order {i.out_of_order} broken {i.broken_streams} "
            f"receipts {i.receipts} | "
            f"load {_fmt(res.throughput_elapsed_s)} s, setup {_fmt(res.setup_s)} s{cap}"
        )
    lines += [
        "[1] hubbub: durable (SQLite WAL, synchronous=FULL, group commit); baseline: in-memory",
        "    relay answer, nothing stored. e2e = send written -> message read at recipient.",
        "[2] ~100% means the single client process, not the server, limits throughput.",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="short smoke run (seconds)")
    p.add_argument("--json", action="store_true", help="print JSON only (progress on stderr)")
    p.add_argument("--pairs", type=int, help="sender/receiver pairs K (default 8)")
    p.add_argument("--messages", type=int, help="total throughput messages N (default 20000)")
    p.add_argument("--window", type=int, help="unanswered sends per sender (default 64)")
    p.add_argument("--body-bytes", type=int, help="message body size in bytes (default 128)")
    p.add_argument("--pingpong", type=int, help="ping-pong messages (default 500)")
    p.add_argument("--phase-cap", type=float, help="seconds a sending phase may take (default 40)")
    p.add_argument("--only", choices=["baseline", "hubbub"], help="run one system only")
    p.add_argument("--baseline-server", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> Config:
    """Config from flags; ``--quick`` shrinks the defaults, explicit flags win."""
    cfg = (
        Config(pairs=2, messages=400, pingpong=50, warmup=10, phase_cap_s=10.0)
        if args.quick
        else Config()
    )
    for attr, value in (
        ("pairs", args.pairs),
        ("messages", args.messages),
        ("window", args.window),
        ("body_bytes", args.body_bytes),
        ("pingpong", args.pingpong),
        ("phase_cap_s", args.phase_cap),
    ):
        if value is not None:
            setattr(cfg, attr, value)
    if cfg.pairs < 1 or cfg.messages < 1 or cfg.window < 1 or cfg.body_bytes < 1:
        raise SystemExit("bench: --pairs, --messages, --window and --body-bytes must be >= 1")
    return cfg


async def run_bench(cfg: Config, only: str | None, progress: TextIO) -> dict[str, SystemResult]:
    """Run the baseline then Hubbub (or ``only`` one), each against its own subprocess."""
    results: dict[str, SystemResult] = {}
    with tempfile.TemporaryDirectory(prefix="hubbub-bench-") as tmp:
        for kind in ("baseline", "hubbub"):
            if only in (None, kind):
                results[kind] = await bench_system(kind, cfg, Path(tmp), progress)
    return results


def _run(coro: Any) -> Any:
    """Run ``coro`` on uvloop when available (as hubbub-server does), else asyncio."""
    if uvloop is not None:
        return uvloop.run(coro)
    return asyncio.run(coro)  # pragma: no cover


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 integrity failure, 2 setup failure)."""
    args = parse_args(argv)
    if args.baseline_server:
        with contextlib.suppress(KeyboardInterrupt):
            _run(serve_baseline(args.port))
        return 0
    cfg = build_config(args)
    progress = sys.stderr
    load_start = _loadavg_1m()
    try:
        results = _run(run_bench(cfg, args.only, progress))
    except (RuntimeError, OSError, grpc.RpcError) as exc:
        print(f"bench: setup failed: {exc}", file=sys.stderr)
        return 2
    machine = machine_facts()
    machine["loadavg_1m_start"] = load_start
    machine["loadavg_1m_end"] = _loadavg_1m()
    ok = all(r.integrity.ok for r in results.values())
    base = results.get("baseline", SystemResult("baseline"))
    hub = results.get("hubbub", SystemResult("hubbub"))
    if args.json:
        fb, fh = figures(base), figures(hub)
        report = {
            "machine": machine,
            "config": asdict(cfg),
            "results": {
                name: {**asdict(r), "integrity_ok": r.integrity.ok} for name, r in results.items()
            },
            "ratios_hubbub_over_baseline": {k: ratio(fh[k], fb[k]) for k in fb},
            "ok": ok,
        }
        print(json.dumps(report, indent=2))
    else:
        print(render_table(cfg, machine, base, hub))
        print("OK: no message lost or duplicated" if ok else "FAIL: messages lost/duplicated")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
