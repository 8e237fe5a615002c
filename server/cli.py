"""``hubbub-server``: run a Hubbub node."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from . import config as config_module
from .app import serve


def build_parser() -> argparse.ArgumentParser:
    """The ``hubbub-server`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="hubbub-server",
        description="Run a Hubbub messenger server (gRPC). Every flag also reads HUBBUB_<FLAG>.",
    )
    config_module.add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = build_parser().parse_args(argv)
    cfg = config_module.from_arguments(args)
    logging.basicConfig(
        level=cfg.log_level,
        format="%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)s",
        stream=sys.stderr,
    )
    try:
        if sys.platform != "win32":
            import uvloop

            uvloop.run(serve(cfg))
        else:  # pragma: no cover - uvloop does not support Windows
            asyncio.run(serve(cfg))
    except KeyboardInterrupt:
        return 0
    except (RuntimeError, OSError) as exc:
        print(f"hubbub-server: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
