"""Fault schedules for torture runs: kill -9 and restart, SIGSTOP/SIGCONT, proxy faults.

Used by ``tests/faults/test_crash.py`` (short, in CI) and ``python -m scripts.torture``
(``make torture``, long). The server is a real ``hubbub-server`` subprocess on a
fixed port and database; clients reach it through a :class:`FaultProxy`.
"""

from __future__ import annotations

import asyncio
import random
import signal
from collections import Counter
from dataclasses import dataclass, field

from .load import LoadDriver, Verdict
from .proxy import FaultProxy
from .server_process import ServerProcess

FAULTS = ("kill9", "sigterm", "sigstop", "cut", "reset", "delay")
GRACE_S = 10.0  # hubbub-server's default --grace


@dataclass
class TortureReport:
    """What a run did and its verdict."""

    verdict: Verdict
    faults: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        """One line: faults injected and the verdict figures."""
        done = ", ".join(f"{n} {kind}" for kind, n in sorted(self.faults.items()))
        return f"faults: {done}; {self.verdict.summary()}"


async def inject(
    kind: str, server: ServerProcess, proxy: FaultProxy, rng: random.Random, pause_s: float
) -> None:
    """Inject one fault and recover from it (restart, continue, resume)."""
    if kind == "kill9":
        await asyncio.to_thread(server.stop, signal.SIGKILL)
        await asyncio.to_thread(server.start)
    elif kind == "sigterm":
        started = asyncio.get_running_loop().time()
        code = await asyncio.to_thread(server.stop, signal.SIGTERM, GRACE_S + 5)
        took = asyncio.get_running_loop().time() - started
        if code != 0 or took > GRACE_S + 2:
            raise AssertionError(f"graceful stop took {took:.1f} s with exit status {code}")
        await asyncio.to_thread(server.start)
    elif kind == "sigstop":
        assert server.proc is not None
        server.proc.send_signal(signal.SIGSTOP)
        await asyncio.sleep(pause_s)
        server.proc.send_signal(signal.SIGCONT)
    elif kind == "cut":
        proxy.cut()
    elif kind == "reset":
        proxy.reset(mid_frame=True)
    elif kind == "delay":
        proxy.delay_s = 0.05
        await asyncio.sleep(rng.uniform(0.5, 1.5))
        proxy.delay_s = 0.0
    else:
        raise ValueError(f"unknown fault {kind!r}")


async def torture(
    server: ServerProcess,
    plan: list[str],
    *,
    pairs: int = 4,
    seed: int = 1,
    gap_s: tuple[float, float] = (0.5, 2.0),
    pause_s: float = 35.0,
    drain_s: float = 90.0,
) -> TortureReport:
    """Run load through a proxy while injecting ``plan``'s faults at random gaps.

    Args:
        server: a started server subprocess (restarted in place by ``kill9``).
        plan: fault kinds, in order (see :data:`FAULTS`).
        pause_s: SIGSTOP length; longer than the clients' keepalive detection.
        drain_s: how long to wait for every confirmed message to be shown.
    """
    rng = random.Random(seed)
    proxy = FaultProxy(server.host, server.port)
    await proxy.start()
    driver = LoadDriver(proxy.address, pairs=pairs)
    report = TortureReport(Verdict(0, 0, 0, [], [], [], 0))
    try:
        await driver.setup()
        await driver.start()
        await driver.wait_started()
        for kind in plan:
            await asyncio.sleep(rng.uniform(*gap_s))
            await inject(kind, server, proxy, rng, pause_s)
            report.faults[kind] += 1
        await asyncio.sleep(gap_s[1])
        driver.stop_sending()
        await driver.drain(drain_s)
    finally:
        await driver.close()
        await proxy.close()
    report.verdict = driver.verdict()
    return report
