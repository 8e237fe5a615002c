"""Benchmark settings and the time bounds of every wait."""

from __future__ import annotations

from dataclasses import dataclass

HOST = "127.0.0.1"
PASSWORD = "bench password 123"
START_TIMEOUT_S = 20.0  # server start-up, seconds
STOP_TIMEOUT_S = 10.0  # server shutdown after SIGTERM, seconds
RPC_TIMEOUT_S = 20.0  # one unary call (Register/Login, argon2id), seconds
EVENT_TIMEOUT_S = 10.0  # one awaited stream event (welcome, window slot, ping-pong), seconds
DRAIN_TIMEOUT_S = 30.0  # waiting for in-flight messages after the last send, seconds
# ChatResponse events that are inbox entries (carry a per-user ``sequence``).
INBOX_KINDS = frozenset({"message", "delivery_receipt", "group_update"})


@dataclass
class Config:
    """Benchmark settings (sizes in bytes, times in seconds, rates in msg/s).

    Attributes:
        pairs: sender/receiver pairs K.
        messages: messages of the max-throughput phase, over all pairs.
        window: unanswered sends per sender in the max-throughput phase.
        body_bytes: message body size.
        pingpong: one-at-a-time messages of the latency phase.
        warmup: messages per pair before any timing.
        ack_every: receivers ack cumulatively every this many inbox entries.
        phase_cap_s: longest a sending phase may run.
        light_fraction: light-load rate as a fraction of the relay's measured max.
        light_rate: light-load rate in msg/s; None = ``light_fraction`` x relay max
            (or ``DEFAULT_LIGHT_RATE`` when the relay is not run).
        light_s: light-load duration.
        idle: idle streams of the idle phase (0 = skip the phase).
        idle_settle_s: wait after the last idle stream opened before reading RSS.
    """

    pairs: int = 8
    messages: int = 20_000
    window: int = 64
    body_bytes: int = 128
    pingpong: int = 500
    warmup: int = 50
    ack_every: int = 32
    phase_cap_s: float = 40.0
    light_fraction: float = 0.2
    light_rate: float | None = None
    light_s: float = 8.0
    idle: int = 300
    idle_settle_s: float = 2.0


DEFAULT_LIGHT_RATE = 2000.0  # msg/s when the relay's max is not measured (--only hubbub)
