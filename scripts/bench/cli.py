"""Flags and the entry point of ``python -m scripts.bench`` (``make bench``).

The default run: the baseline relay, then Hubbub on SQLite, each as its own
subprocess on 127.0.0.1, through warm-up, ping-pong, max throughput, light
load (open loop at 20% of the relay's max) and idle streams (300). Opt-in:
``--streams N`` (N live streams on one node, one group message fanned out to
all), ``--cluster`` (two nodes on throw-away PostgreSQL + Redis),
``--profile DIR`` (py-spy recordings of each server's max and light phases, and of the
``--streams`` connects).
Timing is never asserted. Exit status: 0 ok, 1 messages lost, duplicated or
corrupted, 2 setup failure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

import grpc

from .config import DEFAULT_LIGHT_RATE, Config
from .procstat import loadavg_1m, machine_facts, run_loop
from .profiling import summarize
from .report import figures, ratio, render_table
from .system import SystemResult, bench_system


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(prog="python -m scripts.bench", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="short smoke run (seconds)")
    p.add_argument("--json", action="store_true", help="print JSON only (progress on stderr)")
    p.add_argument("--pairs", type=int, help="sender/receiver pairs K (default 8)")
    p.add_argument("--messages", type=int, help="total throughput messages N (default 20000)")
    p.add_argument("--window", type=int, help="unanswered sends per sender (default 64)")
    p.add_argument("--body-bytes", type=int, help="message body size in bytes (default 128)")
    p.add_argument("--pingpong", type=int, help="ping-pong messages (default 500)")
    p.add_argument("--phase-cap", type=float, help="seconds a sending phase may take (default 40)")
    p.add_argument("--only", choices=["baseline", "hubbub"], help="run one system only")
    p.add_argument(
        "--light-fraction", type=float, help="light load as a fraction of the relay's max (0.2)"
    )
    p.add_argument(
        "--light-rate", type=float, help="light load in msg/s (default: fraction x relay max)"
    )
    p.add_argument("--light-seconds", type=float, help="light-load duration in s (default 8)")
    p.add_argument("--idle", type=int, help="idle streams of the idle phase, 0 = skip (300)")
    p.add_argument(
        "--streams",
        type=int,
        default=0,
        metavar="N",
        help="also open N live streams on one hubbub node and fan one group message out to all",
    )
    p.add_argument(
        "--streams-per-channel",
        type=int,
        default=100,
        help="--streams: Chat streams multiplexed on one client channel (default 100)",
    )
    p.add_argument(
        "--streams-presence",
        choices=["on", "off"],
        default="on",
        help="--streams: 'off' opens the streams with hubbub-presence: off (default on)",
    )
    p.add_argument(
        "--cluster",
        action="store_true",
        help="also run two hubbub nodes on throw-away PostgreSQL + Redis (pairs split)",
    )
    p.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="record each server's max and light phases with py-spy into DIR (pip install py-spy)",
    )
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> Config:
    """Config from flags; ``--quick`` shrinks the defaults, explicit flags win."""
    cfg = (
        Config(
            pairs=2, messages=400, pingpong=50, warmup=10, phase_cap_s=10.0, light_s=2.0, idle=20
        )
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
        ("light_fraction", args.light_fraction),
        ("light_rate", args.light_rate),
        ("light_s", args.light_seconds),
        ("idle", args.idle),
    ):
        if value is not None:
            setattr(cfg, attr, value)
    if cfg.pairs < 1 or cfg.messages < 1 or cfg.window < 1 or cfg.body_bytes < 1:
        raise SystemExit("bench: --pairs, --messages, --window and --body-bytes must be >= 1")
    if cfg.idle < 0 or cfg.light_s < 0:
        raise SystemExit("bench: --idle and --light-seconds must be >= 0")
    return cfg


def light_rate_for(cfg: Config, baseline: SystemResult | None) -> float | None:
    """The light-load rate (msg/s): ``--light-rate``, else the fraction of the relay's
    measured max, else :data:`DEFAULT_LIGHT_RATE`; None when the phase is off."""
    if cfg.light_s <= 0:
        return None
    if cfg.light_rate:
        return cfg.light_rate
    if baseline is not None and baseline.throughput_msg_s:
        return cfg.light_fraction * baseline.throughput_msg_s
    return DEFAULT_LIGHT_RATE


async def run_bench(
    cfg: Config, args: argparse.Namespace, tmp: Path, progress: TextIO
) -> tuple[dict[str, SystemResult], list[str], dict[str, Any]]:
    """Run the systems one after the other, each against its own subprocess(es).

    Returns the results by system name, the report lines of the optional phases,
    and their JSON figures.
    """
    results: dict[str, SystemResult] = {}
    extra: list[str] = []
    extra_json: dict[str, Any] = {}
    if args.only in (None, "baseline"):
        results["baseline"] = await bench_system(
            "baseline",
            cfg,
            tmp / "baseline",
            progress,
            lambda r: light_rate_for(cfg, r),
            args.profile,
        )
    base = results.get("baseline")
    rate = base.light.rate_msg_s if base and base.light else light_rate_for(cfg, None)
    if args.only in (None, "hubbub"):
        results["hubbub"] = await bench_system(
            "hubbub", cfg, tmp / "hubbub", progress, rate, args.profile
        )
    if args.streams:
        from .streams import run_streams

        streams = await run_streams(
            args.streams,
            args.streams_per_channel,
            cfg,
            tmp,
            progress,
            args.profile,
            presence=args.streams_presence == "on",
        )
        extra += streams.lines()
        extra_json["streams"] = asdict(streams)
    if args.cluster:
        from .cluster import bench_cluster

        results["cluster"] = await bench_cluster(cfg, tmp / "cluster", progress, rate, args.profile)
    return results, extra, extra_json


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 integrity failure, 2 setup failure)."""
    args = parse_args(argv)
    cfg = build_config(args)
    progress = sys.stderr
    load_start = loadavg_1m()
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hubbub-bench-") as tmp_name:
        tmp = Path(tmp_name)
        for sub in ("baseline", "hubbub", "cluster"):
            (tmp / sub).mkdir(mode=0o700)  # hubbub-server refuses a shared data directory
        try:
            results, extra, extra_json = run_loop(run_bench(cfg, args, tmp, progress))
        except (RuntimeError, OSError, grpc.RpcError) as exc:
            print(f"bench: setup failed: {exc}", file=sys.stderr)
            return 2
        machine = machine_facts(tmp)
    machine["loadavg_1m_start"] = load_start
    machine["loadavg_1m_end"] = loadavg_1m()
    ok = all(r.integrity.ok for r in results.values())
    base = results.get("baseline", SystemResult("baseline"))
    hub = results.get("hubbub", SystemResult("hubbub"))
    cluster = results.get("cluster")
    if args.json:
        fb, fh = figures(base), figures(hub)
        report = {
            "machine": machine,
            "config": asdict(cfg),
            "results": {
                name: {**asdict(r), "integrity_ok": r.integrity.ok} for name, r in results.items()
            },
            "ratios_hubbub_over_baseline": {k: ratio(fh[k], fb[k]) for k in fb},
            **extra_json,
            "ok": ok,
        }
        if cluster is not None:
            fc = figures(cluster)
            report["ratios_cluster_over_hubbub"] = {k: ratio(fc[k], fh[k]) for k in fc}
        print(json.dumps(report, indent=2))
    else:
        print(render_table(cfg, machine, base, hub, cluster, extra))
        print("OK: no message lost or duplicated" if ok else "FAIL: messages lost/duplicated")
    if args.profile is not None:
        for path in sorted(args.profile.glob("*.txt")):
            print(summarize(path), file=progress if args.json else sys.stdout)
    return 0 if ok else 1
