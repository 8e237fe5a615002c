"""``make torture``: a long fault-injection run; prints the figures and fails on any loss.

Starts a real ``hubbub-server`` subprocess on a temp database, drives K
sender/receiver pairs through the client library via a fault proxy, and injects
``--cycles`` faults (kill -9 + restart by default; ``--mix`` adds proxy cuts,
mid-frame resets, delays and SIGSTOP pauses). Verdict: lost (confirmed to a
sender, never shown to its receiver), duplicated and out-of-order must all be 0.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import ServerProcess
from tests.harness.torture import FAULTS, torture


def main() -> int:
    """Run the torture test; exit status 0 only if nothing was lost, duplicated or reordered."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=100, help="faults to inject (100)")
    parser.add_argument("--pairs", type=int, default=4, help="sender/receiver pairs (4)")
    parser.add_argument("--seed", type=int, default=int(time.time()), help="random seed")
    parser.add_argument(
        "--mix", action="store_true", help="mix kill -9 with cut/reset/delay/sigstop faults"
    )
    parser.add_argument("--pause", type=float, default=35.0, help="SIGSTOP length in seconds (35)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    kinds = FAULTS if args.mix else ("kill9",)
    plan = [rng.choice(kinds) for _ in range(args.cycles)]
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
    print(f"torture seed={args.seed} cycles={args.cycles} in {elapsed:.0f} s")
    print(report.summary())
    for label, items in (
        ("lost", report.verdict.lost),
        ("duplicated", report.verdict.duplicated),
        ("out of order", report.verdict.out_of_order),
    ):
        if items:
            print(f"{label}: {items[:10]}")
    return 0 if report.verdict.ok and report.verdict.confirmed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
