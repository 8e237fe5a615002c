"""``make torture`` (``python -m scripts.torture`` from the repository root): a long
fault-injection run; prints the figures and fails on any loss.

Starts a real ``hubbub-server`` subprocess on a temp database, drives K
sender/receiver pairs through the client library via a fault proxy, and injects
``--cycles`` faults (kill -9 + restart by default; ``--mix`` adds proxy cuts,
mid-frame resets, delays and SIGSTOP pauses). Verdict: lost (confirmed to a
sender, never shown to its receiver), duplicated and out-of-order must all be 0.

``--cluster`` instead starts a throw-away PostgreSQL and Redis and ``--nodes``
``hubbub-server`` nodes on them; the clients get every node address and spread
over the nodes; each cycle kills the busiest node (kill -9, SIGTERM or SIGSTOP,
see ``--faults``), measures how long its clients take to deliver again on another
node, and brings it back (see ``tests/harness/cluster.py``). It prints a table and
also fails when a client was not delivering again within ``--recover`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shlex
import signal
import sys
import tempfile
import time
from pathlib import Path

from tests.backends import (
    BackendUnavailable,
    start_postgres,
    start_redis,
    stop_postgres,
    stop_redis,
)
from tests.harness.cluster import NODE_FAULTS, Cluster, ClusterReport, cluster_torture
from tests.harness.server_process import ServerProcess
from tests.harness.torture import FAULTS, torture


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cycles", type=int, default=None, help="faults to inject (100; 20 with --cluster)"
    )
    parser.add_argument("--pairs", type=int, default=4, help="sender/receiver pairs (4)")
    parser.add_argument("--seed", type=int, default=int(time.time()), help="random seed")
    parser.add_argument(
        "--mix", action="store_true", help="mix kill -9 with cut/reset/delay/sigstop faults"
    )
    parser.add_argument("--pause", type=float, default=35.0, help="SIGSTOP length in seconds (35)")
    cluster = parser.add_argument_group("many nodes")
    cluster.add_argument(
        "--cluster",
        action="store_true",
        help="nodes on a throw-away PostgreSQL + Redis; kill the node clients are on",
    )
    cluster.add_argument("--nodes", type=int, default=2, help="hubbub-server nodes (2)")
    cluster.add_argument(
        "--faults",
        default=",".join(NODE_FAULTS),
        help=f"node faults to choose from, comma-separated ({','.join(NODE_FAULTS)})",
    )
    cluster.add_argument(
        "--recover",
        type=float,
        default=90.0,
        help="seconds a dead node's clients may take to deliver again (90)",
    )
    cluster.add_argument(
        "--node-args",
        default="",
        help="extra hubbub-server flags for every node, e.g. '--presence-ttl 5'",
    )
    return parser


def _single(args: argparse.Namespace) -> int:
    cycles = 100 if args.cycles is None else args.cycles
    rng = random.Random(args.seed)
    kinds = FAULTS if args.mix else ("kill9",)
    plan = [rng.choice(kinds) for _ in range(cycles)]
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(database=Path(tmp) / "torture.db", args=[])
        server.start()
        started = time.monotonic()
        try:
            report = asyncio.run(
                torture(server, plan, pairs=args.pairs, seed=args.seed, pause_s=args.pause)
            )
        finally:
            server.stop(signal.SIGTERM)
    elapsed = time.monotonic() - started
    print(f"torture seed={args.seed} cycles={cycles} in {elapsed:.0f} s")
    print(report.summary())
    _print_items(report.verdict)
    return 0 if report.verdict.ok and report.verdict.confirmed > 0 else 1


def _print_items(verdict: object) -> None:
    for label, attr in (
        ("lost", "lost"),
        ("duplicated", "duplicated"),
        ("out of order", "out_of_order"),
    ):
        items = getattr(verdict, attr)
        if items:
            print(f"{label}: {items[:10]}")


def _cluster(args: argparse.Namespace) -> int:
    cycles = 20 if args.cycles is None else args.cycles
    kinds = [k.strip() for k in args.faults.split(",") if k.strip()]
    unknown = set(kinds) - set(NODE_FAULTS)
    if unknown or not kinds:
        print(f"torture: --faults takes {', '.join(NODE_FAULTS)}", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    plan = [rng.choice(kinds) for _ in range(cycles)]
    postgres = redis = None
    report: ClusterReport | None = None
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            postgres = start_postgres()
            postgres.psql('CREATE DATABASE "hubbub"')
            redis = start_redis()
            cluster = Cluster(
                postgres.url("hubbub"),
                redis.url,
                Path(tmp),
                nodes=args.nodes,
                node_args=shlex.split(args.node_args),
            )
            with cluster:
                print(
                    f"cluster: {args.nodes} nodes {', '.join(cluster.addresses)} on "
                    f"PostgreSQL :{postgres.port} and Redis :{redis.port}; "
                    f"{2 * args.pairs} clients; plan {' '.join(plan)}",
                    flush=True,
                )
                report = asyncio.run(
                    cluster_torture(
                        cluster,
                        plan,
                        pairs=args.pairs,
                        seed=args.seed,
                        recover_s=args.recover,
                    )
                )
                if not report.ok:
                    print(cluster.log_tail())
    except BackendUnavailable as exc:
        print(f"torture: {exc}", file=sys.stderr)
        return 2
    finally:
        if redis is not None:
            stop_redis(redis)
        if postgres is not None:
            stop_postgres(postgres)
    assert report is not None
    elapsed = time.monotonic() - started
    print(f"cluster torture seed={args.seed} nodes={args.nodes} cycles={cycles} in {elapsed:.0f} s")
    print(report.table())
    _print_items(report.verdict)
    return 0 if report.ok else 1


def main() -> int:
    """Run the torture test; exit status 0 only if nothing was lost, duplicated or reordered."""
    args = _parser().parse_args()
    return _cluster(args) if args.cluster else _single(args)


if __name__ == "__main__":
    sys.exit(main())
