"""Reconnect backoff of the client library (exponential, with jitter).

Kept apart from the CLI text module (`render`) so that the library never imports the
CLI; `render.Backoff` remains as a re-export for older callers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass
class Backoff:
    """Exponential backoff with jitter for reconnect attempts.

    Attempt n (0-based) waits between half and all of `min(cap, base * factor**r)`
    seconds, where r = n // `per_round` ("equal jitter", as in the AWS Architecture
    Blog's "Exponential Backoff And Jitter"), so delays grow quickly but never exceed
    `cap` and clients that lost the same server do not all come back at the same
    instant. `per_round` is the number of server addresses tried in turn: a dead address
    is left for the next one after the shortest delay, and the delay only grows once
    every address was tried (a `Conversation` sets it from its client's target).
    """

    base: float = 0.25
    factor: float = 2.0
    cap: float = 4.0
    attempt: int = 0
    rng: random.Random | None = None
    per_round: int = 1

    def ceiling(self, attempt: int) -> float:
        """The largest delay (seconds) attempt number `attempt` may wait."""
        step = attempt // max(1, self.per_round)
        return min(self.cap, self.base * self.factor ** min(step, 64))

    def next_delay(self) -> float:
        """Return the delay (seconds) before the next attempt and count the attempt."""
        top = self.ceiling(self.attempt)
        self.attempt += 1
        rng = self.rng or random
        return top / 2 + rng.uniform(0, top / 2)

    def reset(self) -> None:
        """Start again from the shortest delay (call after a successful connect)."""
        self.attempt = 0
