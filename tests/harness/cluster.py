"""Cluster torture: node deaths under load, with failover times.

Two or three ``hubbub-server`` subprocess nodes share one PostgreSQL database and one
Redis (``--postgres-url``, ``--redis-url``). The :class:`LoadDriver`'s clients get
every node address, each in its own order, so they spread over the nodes. Each
cycle of :func:`cluster_torture`:

1. waits until the cluster is settled: every client has a stream open and the
   nodes' ``hubbub_streams_active`` gauges add up to the number of clients;
2. after a short gap of load, picks the node with the most streams (its
   ``/metrics``) and kills it with ``kill9`` (SIGKILL), ``sigterm`` (graceful stop,
   which must end within the grace period with exit status 0) or ``sigstop``
   (the process freezes, its sockets stay open);
3. waits until each of its clients is delivering again on another node (a sender
   has a send confirmed, a receiver shows a message) or ``recover_s`` has passed;
4. restarts the node on its port (SIGCONT for ``sigstop``).

A cycle's *failover time* per client is the time from the signal until that
client's first delivery after its reconnect. For every client slower than the goal
(:data:`GOAL_S`), the report lists its reconnect steps (stream lost, each connection
attempt and its outcome, Welcome, Synced) as the client library logged them
(logger ``hubbub.client.reconnect``), so the time can be told apart into detection,
attempts, takeover and replay. Used by ``tests/faults/test_cluster.py``
(short, in CI) and ``python -m scripts.torture --cluster`` (``make torture``, long).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import signal
import statistics
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .load import BACK, DELIVERING, LOST, LoadDriver, Verdict
from .server_process import ServerProcess
from .torture import GRACE_S

NODE_FAULTS = ("kill9", "sigterm", "sigstop")
GOAL_S = 5.0  # issue 9: a dead node's clients deliver again within 5 s
_STREAMS = re.compile(r"^hubbub_streams_active\s+(\S+)$", re.MULTILINE)
_METRICS_LINE = re.compile(r"metrics on http://[^:]+:(\d+)/metrics")


@dataclass
class ClusterNode:
    """One ``hubbub-server`` node; ``frozen`` while it is SIGSTOPped."""

    index: int
    process: ServerProcess
    frozen: bool = False
    _run_log_start: int = 0  # index in process.log where this run's output starts

    @property
    def name(self) -> str:
        """``node1``, ``node2``, … (1-based)."""
        return f"node{self.index + 1}"

    @property
    def running(self) -> bool:
        """True if the process is alive and not frozen."""
        proc = self.process.proc
        return proc is not None and proc.poll() is None and not self.frozen

    def start(self) -> None:
        """Start (or restart) the node on its port; raises RuntimeError if it cannot start."""
        self._run_log_start = len(self.process.log)
        self.process.start()

    def metrics_port(self) -> int:
        """The ``/metrics`` port this run of the node printed (waits up to 5 s for it)."""
        deadline = time.monotonic() + 5
        while True:
            for line in self.process.log[self._run_log_start :]:
                m = _METRICS_LINE.search(line)
                if m:
                    return int(m.group(1))
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} printed no metrics address")
            time.sleep(0.05)

    def streams(self) -> int:
        """Live Chat streams on this node (its ``hubbub_streams_active`` gauge)."""
        url = f"http://127.0.0.1:{self.metrics_port()}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            text = reply.read().decode()
        m = _STREAMS.search(text)
        return int(float(m.group(1))) if m else 0


class Cluster:
    """``nodes`` ``hubbub-server`` subprocesses on one PostgreSQL database and one Redis.

    Args:
        postgres_url: ``postgresql://`` URL of an empty (or Hubbub) database.
        redis_url: ``redis://`` URL.
        root: a directory for the nodes' (unused) SQLite paths.
        nodes: how many nodes (2 or 3 make sense).
        node_args: extra ``hubbub-server`` flags for every node (e.g. ``--presence-ttl 5``).

    Each node serves its Prometheus metrics on a port of its own (``--metrics-port 0``).
    Use as a context manager or call :meth:`start` / :meth:`stop`; the nodes are killed
    at :meth:`stop`.
    """

    def __init__(
        self,
        postgres_url: str,
        redis_url: str,
        root: Path,
        *,
        nodes: int = 2,
        node_args: Sequence[str] = (),
    ) -> None:
        args = [
            "--postgres-url",
            postgres_url,
            "--redis-url",
            redis_url,
            "--metrics-port",
            "0",
            *node_args,
        ]
        self.nodes = [
            ClusterNode(i, ServerProcess(database=root / f"node{i + 1}.db", args=list(args)))
            for i in range(nodes)
        ]

    @property
    def addresses(self) -> list[str]:
        """Every node's "host:port" (stable across restarts)."""
        return [node.process.address for node in self.nodes]

    def start(self) -> None:
        """Start every node, one after the other (raises RuntimeError if one cannot start)."""
        for node in self.nodes:
            node.start()

    def stop(self) -> None:
        """Kill every node (SIGCONT first for a frozen one)."""
        for node in self.nodes:
            if node.frozen and node.process.proc is not None:
                node.process.proc.send_signal(signal.SIGCONT)
                node.frozen = False
            node.process.stop(signal.SIGKILL)

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 15) -> str:
        """The last ``lines`` output lines of every node, for a failure report."""
        return "\n".join(
            f"--- {node.name} ---\n" + "".join(node.process.log[-lines:]) for node in self.nodes
        )


@dataclass
class Failover:
    """One node death: which node, how, and how its clients fared.

    ``clients`` is the node's stream count just before the signal; ``delivering_s``
    holds, per client that moved, the seconds from the signal to its first delivery
    after reconnecting (``reconnect_s``: to its new stream); ``stranded`` counts the
    clients that were not delivering again within the recovery bound.
    """

    kind: str
    node: str
    clients: int
    delivering_s: list[float] = field(default_factory=list)
    reconnect_s: list[float] = field(default_factory=list)
    stranded: int = 0
    #: Per client slower than GOAL_S: its reconnect steps, "+seconds step" from the signal.
    slow: dict[str, list[str]] = field(default_factory=dict)


#: The client library's logger of reconnect steps (DEBUG records carry ``hubbub_user``).
STEP_LOGGER = "hubbub.client.reconnect"


class StepLog(logging.Handler):
    """Keeps the client library's reconnect steps: ``(time.monotonic(), user, text)``."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.steps: list[tuple[float, str, str]] = []
        self.saved: tuple[int, bool] = (logging.NOTSET, True)

    def emit(self, record: logging.LogRecord) -> None:
        """Store one step (the record's ``hubbub_user`` attribute names the client)."""
        user = str(getattr(record, "hubbub_user", "?"))
        self.steps.append((time.monotonic(), user, record.getMessage()))

    @classmethod
    def install(cls) -> StepLog:
        """A StepLog attached to the library's step logger (DEBUG, not propagated to the
        console); call :meth:`remove` when done."""
        handler = cls()
        logger = logging.getLogger(STEP_LOGGER)
        handler.saved = (logger.level, logger.propagate)
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        return handler

    def remove(self) -> None:
        """Detach from the step logger and restore its level and propagation."""
        logger = logging.getLogger(STEP_LOGGER)
        logger.removeHandler(self)
        logger.setLevel(self.saved[0])
        logger.propagate = self.saved[1]

    def between(self, user: str, start: float, end: float) -> list[str]:
        """``user``'s steps from ``start`` to ``end`` (monotonic s), as "+s.ss text"."""
        return [
            f"+{at - start:6.2f}s {text}"
            for at, who, text in list(self.steps)
            if who == user and start <= at <= end
        ]


def _figures(values: Sequence[float]) -> str:
    if not values:
        return f"{'-':>7} {'-':>7}"
    return f"{statistics.median(values):6.2f}s {max(values):6.2f}s"


@dataclass
class ClusterReport:
    """What a cluster run did: the load verdict and one :class:`Failover` per cycle."""

    verdict: Verdict
    cycles: list[Failover] = field(default_factory=list)
    unsettled: int = 0  # cycles started before every client was back on a stream
    problems: list[str] = field(default_factory=list)  # e.g. a graceful stop that overran

    @property
    def failover_s(self) -> list[float]:
        """Every client's failover time (seconds) over all cycles."""
        return [t for c in self.cycles for t in c.delivering_s]

    @property
    def stranded(self) -> int:
        """Clients that never delivered again within the recovery bound, over all cycles."""
        return sum(c.stranded for c in self.cycles)

    @property
    def ok(self) -> bool:
        """Nothing lost, duplicated or reordered, something confirmed, nobody stranded,
        every graceful stop within the grace period."""
        return (
            self.verdict.ok
            and self.verdict.confirmed > 0
            and self.stranded == 0
            and not self.problems
        )

    def table(self) -> str:
        """Per cycle and per fault kind: clients moved, failover median and max."""
        head = (
            f"{'cycle':>5} {'fault':<8} {'node':<6} {'clients':>7} "
            f"{'reconnect med/max':>17} {'delivering med/max':>18} {'stranded':>8}"
        )
        rows = [head, "-" * len(head)]
        for n, c in enumerate(self.cycles, 1):
            rows.append(
                f"{n:>5} {c.kind:<8} {c.node:<6} {c.clients:>7} "
                f"{_figures(c.reconnect_s):>17} {_figures(c.delivering_s):>18} {c.stranded:>8}"
            )
        rows += ["", f"{'fault':<8} {'cycles':>6} {'clients':>7} {'failover median':>15} "
                 f"{'max':>7} {'stranded':>8}"]  # fmt: skip
        kinds = sorted({c.kind for c in self.cycles})
        for kind in [*kinds, "all"]:
            chosen = [c for c in self.cycles if kind in ("all", c.kind)]
            times = [t for c in chosen for t in c.delivering_s]
            median = f"{statistics.median(times):.2f} s" if times else "-"
            top = f"{max(times):.2f} s" if times else "-"
            rows.append(
                f"{kind:<8} {len(chosen):>6} {sum(c.clients for c in chosen):>7} "
                f"{median:>15} {top:>7} {sum(c.stranded for c in chosen):>8}"
            )
        times = self.failover_s
        goal = "met" if times and max(times) <= GOAL_S else "MISSED"
        rows += ["", f"failover goal <= {GOAL_S:.0f} s: {goal}", self.verdict.summary()]
        if self.unsettled:
            rows.append(f"{self.unsettled} cycle(s) started before every client was back")
        rows += [f"problem: {p}" for p in self.problems]
        slow = [(n, c, name, steps) for n, c in enumerate(self.cycles, 1)
                for name, steps in sorted(c.slow.items())]  # fmt: skip
        if slow:
            rows += ["", f"clients slower than {GOAL_S:.0f} s, step by step from the signal:"]
        for n, c, name, steps in slow:
            rows.append(f"  cycle {n} {c.kind} {c.node} {name}:")
            rows += [f"    {step}" for step in steps]
        return "\n".join(rows)


async def _settle(driver: LoadDriver, cluster: Cluster, within_s: float) -> bool:
    """Wait until every client is on a stream and the nodes' gauges agree (bounded)."""
    want = len(driver.names)
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if driver.connected() == want:
            counts = await asyncio.gather(
                *(asyncio.to_thread(n.streams) for n in cluster.nodes if n.running)
            )
            if sum(counts) == want:
                return True
        await asyncio.sleep(0.2)
    return False


def _outcome(driver: LoadDriver, t0: float) -> tuple[dict[str, float], dict[str, float]]:
    """Per client that lost its stream at or after ``t0``: seconds from ``t0`` to its first
    new stream and to its first delivery after that."""
    lost: set[str] = set()
    back: dict[str, float] = {}
    delivering: dict[str, float] = {}
    for at, name, what in list(driver.timeline):
        if at < t0:
            continue
        if what == LOST:
            lost.add(name)
        elif what == BACK and name in lost:
            back.setdefault(name, at - t0)
        elif what == DELIVERING and name in back:
            delivering.setdefault(name, at - t0)
    return back, delivering


async def _wait_recovered(driver: LoadDriver, t0: float, clients: int, within_s: float) -> None:
    """Wait until ``clients`` clients lost their stream after ``t0`` and deliver again."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        _, delivering = _outcome(driver, t0)
        if len(delivering) >= clients:
            return
        await asyncio.sleep(0.05)


async def _kill(
    kind: str, node: ClusterNode, driver: LoadDriver, recover_s: float, problems: list[str]
) -> tuple[float, int]:
    """Kill ``node`` with ``kind``, wait for its clients to move, bring it back.

    Returns the signal time (``time.monotonic()``) and the node's stream count before it.
    A graceful stop that overruns the grace period (then SIGKILLed) or exits non-zero is
    added to ``problems`` with the node's last output lines.
    """
    clients = await asyncio.to_thread(node.streams)
    proc = node.process
    assert proc.proc is not None
    t0 = time.monotonic()
    if kind == "kill9":
        await asyncio.to_thread(proc.stop, signal.SIGKILL)
        await _wait_recovered(driver, t0, clients, recover_s)
        await asyncio.to_thread(node.start)
    elif kind == "sigterm":
        mark = len(proc.log)
        code = await asyncio.to_thread(proc.stop, signal.SIGTERM, GRACE_S + 5)
        took = time.monotonic() - t0
        if code != 0 or took > GRACE_S + 2:
            tail = "".join(proc.log[mark:][-10:])
            problems.append(
                f"{node.name}: graceful stop took {took:.1f} s with exit status {code}\n{tail}"
            )
        await _wait_recovered(driver, t0, clients, recover_s)
        await asyncio.to_thread(node.start)
    elif kind == "sigstop":
        proc.proc.send_signal(signal.SIGSTOP)
        node.frozen = True
        try:
            await _wait_recovered(driver, t0, clients, recover_s)
        finally:
            proc.proc.send_signal(signal.SIGCONT)
            node.frozen = False
    else:
        raise ValueError(f"unknown node fault {kind!r}")
    return t0, clients


async def cluster_torture(
    cluster: Cluster,
    plan: Sequence[str],
    *,
    pairs: int = 4,
    seed: int = 1,
    gap_s: tuple[float, float] = (0.5, 2.0),
    recover_s: float = 90.0,
    settle_s: float = 60.0,
    drain_s: float = 90.0,
) -> ClusterReport:
    """Run load over ``cluster`` while killing the busiest node once per ``plan`` entry.

    Args:
        cluster: started nodes.
        plan: fault kinds in order (see :data:`NODE_FAULTS`).
        pairs: sender/receiver pairs (2 × ``pairs`` clients).
        gap_s: load time before each fault, seconds (uniform in this range).
        recover_s: how long a dead node's clients may take to deliver again, seconds;
            the node is brought back after that at the latest.
        settle_s: how long to wait for every client to be on a stream before a cycle.
        drain_s: how long to wait at the end for every confirmed message to be shown.
    """
    rng = random.Random(seed)
    driver = LoadDriver(nodes=cluster.addresses, pairs=pairs)
    report = ClusterReport(Verdict(0, 0, 0, [], [], [], 0))
    steps = StepLog.install()
    try:
        await driver.setup()
        await driver.start()
        await driver.wait_started()
        for kind in plan:
            if not await _settle(driver, cluster, settle_s):
                report.unsettled += 1
            await asyncio.sleep(rng.uniform(*gap_s))
            counts = await asyncio.gather(*(asyncio.to_thread(n.streams) for n in cluster.nodes))
            busiest = max(counts)
            victim = rng.choice(
                [n for n, c in zip(cluster.nodes, counts, strict=True) if c == busiest]
            )
            t0, clients = await _kill(kind, victim, driver, recover_s, report.problems)
            back, delivering = _outcome(driver, t0)
            slow = {
                name: [*steps.between(name, t0, t0 + took), f"+{took:6.2f}s first delivery"]
                for name, took in delivering.items()
                if took > GOAL_S
            }
            report.cycles.append(
                Failover(
                    kind,
                    victim.name,
                    clients,
                    sorted(delivering.values()),
                    sorted(back.values()),
                    stranded=max(0, clients - len(delivering)),
                    slow=slow,
                )
            )
        await _settle(driver, cluster, settle_s)
        await asyncio.sleep(gap_s[1])
        driver.stop_sending()
        await driver.drain(drain_s)
    finally:
        steps.remove()
        await driver.close()
    report.verdict = driver.verdict()
    return report
