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
        log_format: ``text`` (key=value) or ``json`` (one object per line).
        tls_cert: PEM certificate chain file; with ``tls_key`` the server speaks TLS.
        tls_key: PEM private key file.
        grace_s: graceful-shutdown period, seconds.
        write_timeout_s: slowest accepted stream write, seconds.
        outbox_events: per-stream outbound queue bound, events.
        outbox_bytes: per-stream outbound queue bound, bytes.
        keepalive_time_ms: interval of server keepalive pings, ms.
        keepalive_timeout_ms: wait for a ping ack before dropping the peer, ms.
        metrics_port: Prometheus ``/metrics`` HTTP port on ``host`` (-1 = off, 0 = any).
        ldap_url: LDAP server for login, ``ldap://`` or ``ldaps://`` (empty = no LDAP).
        ldap_user_dn: DN template to bind as, with ``{username}``.
        ldap_start_tls: run StartTLS before binding.
        ldap_ca_file: PEM CA file to verify the LDAP server (empty = system CAs).
        ldap_only: only the directory authenticates; local passwords are ignored.
        ldap_timeout_s: LDAP connect/answer timeout, seconds.
    """

    host: str = "127.0.0.1"
    port: int = 50051
    database: str = "./data/hubbub.db"
    max_clients: int = 0
    max_message_bytes: int = 65536
    log_level: str = "INFO"
    log_format: str = "text"
    tls_cert: str = ""
    tls_key: str = ""
    grace_s: float = 10.0
    write_timeout_s: float = 30.0
    outbox_events: int = 1024
    outbox_bytes: int = 8 * 1024 * 1024
    keepalive_time_ms: int = 20_000
    keepalive_timeout_ms: int = 10_000
    metrics_port: int = -1
    ldap_url: str = ""
    ldap_user_dn: str = ""
    ldap_start_tls: bool = False
    ldap_ca_file: str = ""
    ldap_only: bool = False
    ldap_timeout_s: float = 5.0


def _env(name: str, default: object) -> str:
    return os.environ.get(f"HUBBUB_{name.upper()}", str(default))


def _env_flag(name: str, default: bool) -> bool:
    value = _env(name, default).strip().lower()
    return value in ("1", "true", "yes", "on")


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
        "--log-format",
        default=_env("log_format", d.log_format),
        choices=["text", "json"],
        help="log line format (HUBBUB_LOG_FORMAT)",
    )
    parser.add_argument(
        "--tls-cert",
        default=_env("tls_cert", d.tls_cert),
        help="PEM certificate chain; with --tls-key the server uses TLS (HUBBUB_TLS_CERT)",
    )
    parser.add_argument(
        "--tls-key",
        default=_env("tls_key", d.tls_key),
        help="PEM private key for --tls-cert (HUBBUB_TLS_KEY)",
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
        "--metrics-port",
        type=int,
        default=int(_env("metrics_port", d.metrics_port)),
        help="serve Prometheus metrics at http://HOST:PORT/metrics; -1 = off, 0 = any port "
        "(HUBBUB_METRICS_PORT)",
    )
    parser.add_argument(
        "--keepalive-timeout-ms",
        type=int,
        default=int(_env("keepalive_timeout_ms", d.keepalive_timeout_ms)),
        help="keepalive ping ack timeout in ms (HUBBUB_KEEPALIVE_TIMEOUT_MS)",
    )
    parser.add_argument(
        "--ldap-url",
        default=_env("ldap_url", d.ldap_url),
        help="LDAP server that checks login passwords, ldap://host:port or ldaps://... "
        "(HUBBUB_LDAP_URL)",
    )
    parser.add_argument(
        "--ldap-user-dn",
        default=_env("ldap_user_dn", d.ldap_user_dn),
        help="DN to bind as, e.g. uid={username},ou=people,dc=example,dc=org (HUBBUB_LDAP_USER_DN)",
    )
    parser.add_argument(
        "--ldap-start-tls",
        action=argparse.BooleanOptionalAction,
        default=_env_flag("ldap_start_tls", d.ldap_start_tls),
        help="StartTLS before the LDAP bind (HUBBUB_LDAP_START_TLS)",
    )
    parser.add_argument(
        "--ldap-ca-file",
        default=_env("ldap_ca_file", d.ldap_ca_file),
        help="PEM CA file to verify the LDAP server; system CAs if unset (HUBBUB_LDAP_CA_FILE)",
    )
    parser.add_argument(
        "--ldap-only",
        action=argparse.BooleanOptionalAction,
        default=_env_flag("ldap_only", d.ldap_only),
        help="only the LDAP directory decides logins (HUBBUB_LDAP_ONLY)",
    )
    parser.add_argument(
        "--ldap-timeout",
        type=float,
        default=float(_env("ldap_timeout", d.ldap_timeout_s)),
        help="LDAP connect/answer timeout in seconds (HUBBUB_LDAP_TIMEOUT)",
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
        log_format=args.log_format,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        grace_s=args.grace,
        write_timeout_s=args.write_timeout,
        outbox_events=args.outbox_events,
        keepalive_time_ms=args.keepalive_time_ms,
        keepalive_timeout_ms=args.keepalive_timeout_ms,
        metrics_port=args.metrics_port,
        ldap_url=args.ldap_url,
        ldap_user_dn=args.ldap_user_dn,
        ldap_start_tls=args.ldap_start_tls,
        ldap_ca_file=args.ldap_ca_file,
        ldap_only=args.ldap_only,
        ldap_timeout_s=args.ldap_timeout,
    )
