"""Login latency idle vs under a Register flood (issue 8, hole 4): prints both and the ratio.

Starts an in-process server on a temp database (per-address Register limit
raised so the flood reaches argon2), times ``--samples`` idle logins, then
starts ``--flood`` parallel Register loops and times ``--samples`` logins
during the flood. Usage: ``.venv/bin/python scripts/login_flood.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from hubbub.server.app import start_server
from hubbub.server.config import ServerConfig
from hubbub.v1 import messenger_pb2 as pb
from hubbub.v1 import messenger_pb2_grpc as pb_grpc

PASSWORD = "correct horse battery"


async def measure(flood: int, samples: int) -> tuple[list[float], list[float]]:
    """(idle login seconds, login seconds under a ``flood``-way Register flood)."""
    with tempfile.TemporaryDirectory() as tmp:
        settings: dict[str, Any] = {"port": 0, "database": str(Path(tmp) / "h.db"), "grace_s": 1}
        if "register_limit" in ServerConfig.__dataclass_fields__:  # absent before the fix
            settings["register_limit"] = "1000000 per minute"
        server = await start_server(ServerConfig(**settings))
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        stub = pb_grpc.MessengerServiceStub(channel)
        try:
            await stub.Register(pb.RegisterRequest(username="alice", password=PASSWORD))

            async def login() -> float:
                start = time.perf_counter()
                await stub.Login(pb.LoginRequest(username="alice", password=PASSWORD))
                return time.perf_counter() - start

            idle = [await login() for _ in range(samples)]
            done = 0
            stop = asyncio.Event()

            async def register_loop(worker: int) -> None:
                nonlocal done
                n = 0
                while not stop.is_set():
                    with contextlib.suppress(grpc.aio.AioRpcError):
                        await stub.Register(
                            pb.RegisterRequest(username=f"f{worker}x{n}", password=PASSWORD)
                        )
                        done += 1
                    n += 1

            tasks = [asyncio.create_task(register_loop(i)) for i in range(flood)]
            await asyncio.sleep(2.0)  # the flood fills argon2's queue
            loaded = [await login() for _ in range(samples)]
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            print(f"registrations completed during the run: {done}", file=sys.stderr)
            return idle, loaded
        finally:
            await channel.close(None)
            await server.stop(grace_s=1.0)


def main() -> int:
    """Print idle and flooded login times (median, max) and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flood", type=int, default=64, help="parallel Register loops (64)")
    parser.add_argument("--samples", type=int, default=5, help="logins timed per phase (5)")
    args = parser.parse_args()
    idle, loaded = asyncio.run(measure(args.flood, args.samples))
    ratio = statistics.median(loaded) / statistics.median(idle)
    print(
        f"login idle: median {statistics.median(idle):.3f} s, max {max(idle):.3f} s; "
        f"under a {args.flood}-way Register flood: median {statistics.median(loaded):.3f} s, "
        f"max {max(loaded):.3f} s; ratio {ratio:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
