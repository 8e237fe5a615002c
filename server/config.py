"""Server settings from flags and ``HUBBUB_*`` environment variables."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything ``hubbub-server`` needs to run.

    Attributes:
        host: address to listen on.
        port: TCP port (0 picks a free one).
        database: SQLite file path.
        max_clients: most live Chat streams (0 = unlimited).
        max_message_bytes: largest message body in UTF-8 bytes.
        log_level: logging level name.
        grace_s: graceful-shutdown period, seconds.
        write_timeout_s: slowest accepted stream write, seconds.
        outbox_events: per-stream outbound queue bound, events.
        outbox_bytes: per-stream outbound queue bound, bytes.
        keepalive_time_ms: interval of server keepalive pings, ms.
        keepalive_timeout_ms: wait for a ping ack before dropping the peer, ms.
    """

    host: str = "127.0.0.1"
    port: int = 50051
    database: str = "./data/hubbub.db"
    max_clients: int = 0
    max_message_bytes: int = 65536
    log_level: str = "INFO"
    grace_s: float = 10.0
    write_timeout_s: float = 30.0
    outbox_events: int = 1024
    outbox_bytes: int = 8 * 1024 * 1024
    keepalive_time_ms: int = 20_000
    keepalive_timeout_ms: int = 10_000


def _env(name: str, default: object) -> str:
    return os.environ.get(f"HUBBUB_{name.upper()}", str(default))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the server flags; each defaults to its ``HUBBUB_<NAME>`` environment variable."""
    d = ServerConfig()
    parser.add_argument("--host", default=_env("host", d.host), help="listen address (HUBBUB_HOST)")
    parser.add_argument(
        "--port",
        type=int,
        default=int(_env("port", d.port)),
        help="TCP port, 0 = any (HUBBUB_PORT)",
    )
    parser.add_argument(
        "--database",
        default=_env("database", d.database),
        help="SQLite database file (HUBBUB_DATABASE)",
    )
    parser.add_argument(
        "--max-clients",
        type=int,
        default=int(_env("max_clients", d.max_clients)),
        help="most live chat streams, 0 = unlimited (HUBBUB_MAX_CLIENTS)",
    )
    parser.add_argument(
        "--max-message-bytes",
        type=int,
        default=int(_env("max_message_bytes", d.max_message_bytes)),
        help="largest message body in bytes (HUBBUB_MAX_MESSAGE_BYTES)",
    )
    parser.add_argument(
        "--log-level",
        default=_env("log_level", d.log_level),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="log level (HUBBUB_LOG_LEVEL)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=float(_env("grace", d.grace_s)),
        help="graceful shutdown period in seconds (HUBBUB_GRACE)",
    )
    parser.add_argument(
        "--write-timeout",
        type=float,
        default=float(_env("write_timeout", d.write_timeout_s)),
        help="seconds a stream write may take before the client is dropped (HUBBUB_WRITE_TIMEOUT)",
    )
    parser.add_argument(
        "--outbox-events",
        type=int,
        default=int(_env("outbox_events", d.outbox_events)),
        help="per-stream outbound queue bound, events (HUBBUB_OUTBOX_EVENTS)",
    )
    parser.add_argument(
        "--keepalive-time-ms",
        type=int,
        default=int(_env("keepalive_time_ms", d.keepalive_time_ms)),
        help="keepalive ping interval in ms (HUBBUB_KEEPALIVE_TIME_MS)",
    )
    parser.add_argument(
        "--keepalive-timeout-ms",
        type=int,
        default=int(_env("keepalive_timeout_ms", d.keepalive_timeout_ms)),
        help="keepalive ping ack timeout in ms (HUBBUB_KEEPALIVE_TIMEOUT_MS)",
    )


def from_arguments(args: argparse.Namespace) -> ServerConfig:
    """Build a :class:`ServerConfig` from parsed flags."""
    return ServerConfig(
        host=args.host,
        port=args.port,
        database=args.database,
        max_clients=args.max_clients,
        max_message_bytes=args.max_message_bytes,
        log_level=args.log_level,
        grace_s=args.grace,
        write_timeout_s=args.write_timeout,
        outbox_events=args.outbox_events,
        keepalive_time_ms=args.keepalive_time_ms,
        keepalive_timeout_ms=args.keepalive_timeout_ms,
    )
