"""``--cluster``: two hubbub-server nodes on throw-away PostgreSQL + Redis, pairs split.

PostgreSQL and Redis come from the test fixtures' helpers in
:mod:`tests.backends` (a temp cluster with ``fsync=off``, the store still asks
for ``synchronous_commit = on``; a redis-server without persistence), so the
figures compare the store and broker code paths, not the disks. Each pair's
sender is on one node and its receiver on the other (alternating), so every
message crosses the broker. Server CPU is the sum of both nodes; PostgreSQL's
(postmaster and its children) and Redis's CPU over all load phases is reported
apart, per message received.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from .config import Config
from .peer import Peer
from .procstat import descendants, process_cpu_s
from .seed import open_postgres, seed_database
from .servers import ServerProcess, start_server_process
from .system import SystemResult, pair_names, run_load_phases, stop_reporting
from .tracker import Tracker


def _backend_helpers() -> tuple[Callable[[], Any], Callable[[Any], None], Callable[[], Any],
                                Callable[[Any], None]]:  # fmt: skip
    """(start_postgres, stop_postgres, start_redis, stop_redis) from tests.backends.

    The script-friendly public names exist once the fixtures are importable without
    pytest; before that the fixtures' private starters are used (their pytest
    failures are turned into RuntimeError by :func:`_as_runtime_error`).
    """
    from tests import backends

    names = ("start_postgres", "stop_postgres", "start_redis", "stop_redis")
    if all(hasattr(backends, n) for n in names):
        return tuple(getattr(backends, n) for n in names)
    return tuple(getattr(backends, "_" + n) for n in names)


def postmaster_pid(data_dir: Path) -> int:
    """The PostgreSQL postmaster's pid (first line of ``postmaster.pid``); 0 if unreadable."""
    try:
        return int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


@contextmanager
def _as_runtime_error(what: str) -> Iterator[None]:
    """Turn a fixture failure (pytest's Failed, a BaseException) into RuntimeError."""
    try:
        yield
    except Exception as exc:
        raise RuntimeError(f"{what}: {exc}") from exc
    except BaseException as exc:  # pytest.fail outside pytest
        if type(exc).__name__ in ("Failed", "BackendUnavailable"):
            raise RuntimeError(f"{what}: {exc}") from None
        raise


async def bench_cluster(
    cfg: Config,
    tmp: Path,
    progress: TextIO,
    light_rate: float | None,
    profile: Path | None = None,
) -> SystemResult:
    """Start PostgreSQL + Redis, seed the pair users, start two nodes, run the load phases
    (``profile``: py-spy recordings of node 0, ``cluster-max.txt``/``cluster-light.txt``)."""
    start_pg, stop_pg, start_redis, stop_redis = _backend_helpers()
    t0 = time.perf_counter()
    result = SystemResult("cluster")
    tracker = Tracker()
    print("[cluster] starting throw-away PostgreSQL and Redis…", file=progress)
    with _as_runtime_error("PostgreSQL"):
        postgres = await asyncio.to_thread(start_pg)
    nodes: list[ServerProcess] = []
    peers: list[Peer] = []
    try:
        with _as_runtime_error("Redis"):
            redis = await asyncio.to_thread(start_redis)
        try:
            database = f"bench_{uuid.uuid4().hex[:12]}"
            with _as_runtime_error("CREATE DATABASE"):
                await asyncio.to_thread(postgres.psql, f'CREATE DATABASE "{database}"')
            url = postgres.url(database)
            names = pair_names(cfg.pairs)
            tokens = await seed_database(open_postgres(url), names)
            for i in range(2):
                nodes.append(
                    await start_server_process(
                        f"node{i}", tmp, postgres_url=url, redis_url=redis.url
                    )
                )
            # pair i: sender on node i % 2, receiver on the other node
            peers = [
                Peer(
                    name,
                    tokens[name],
                    nodes[(index // 2 + index % 2) % 2].address,
                    tracker,
                    cfg.ack_every,
                    batching=True,
                )
                for index, name in enumerate(names)
            ]
            for peer in peers:
                await peer.connect()
            pairs = [(peers[2 * i], peers[2 * i + 1]) for i in range(cfg.pairs)]
            result.setup_s = time.perf_counter() - t0
            backend_pids = [*descendants(postmaster_pid(postgres.data_dir)), redis.proc.pid]
            cpu0 = sum(process_cpu_s(pid) or 0.0 for pid in backend_pids)
            received0 = tracker.integrity.received
            await run_load_phases(
                result, pairs, tracker, cfg, [n.pid for n in nodes], light_rate, progress, profile
            )
            backend_pids = [*descendants(postmaster_pid(postgres.data_dir)), redis.proc.pid]
            cpu1 = sum(process_cpu_s(pid) or 0.0 for pid in backend_pids)
            messages = tracker.integrity.received - received0
            if messages:
                # backends that ended meanwhile are missed: a lower bound
                result.backend_cpu_us_per_msg = 1e6 * max(0.0, cpu1 - cpu0) / messages
        finally:
            await asyncio.gather(*(p.close() for p in peers))
            for node in nodes:
                await stop_reporting(node, progress)
            await asyncio.to_thread(stop_redis, redis)
    finally:
        await asyncio.to_thread(stop_pg, postgres)
    result.integrity = tracker.finish()
    return result
