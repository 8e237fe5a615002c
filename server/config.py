"""Server settings from flags and ``HUBBUB_*`` environment variables."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything ``hubbub-server`` needs to run.

    Attributes:
        host: address to listen on.
        port: TCP port (0 picks a free one).
        database: SQLite file path (the embedded default; unused with ``postgres_url``).
        postgres_url: PostgreSQL URL; when set the nodes store everything there.
        redis_url: Redis URL for cross-node fan-out and presence (needs ``postgres_url``).
        presence_ttl_s: seconds without a heartbeat after which a node counts as dead
            (Redis): its users show offline and may connect to another node.
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
    postgres_url: str = ""
    redis_url: str = ""
    presence_ttl_s: float = 5.0
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


@dataclass(frozen=True, slots=True)
class _Flag:
    """One command-line flag for a :class:`ServerConfig` field (type from the field's default)."""

    name: str  # e.g. "--max-clients"; the environment variable is HUBBUB_MAX_CLIENTS
    field: str  # ServerConfig attribute
    help: str
    choices: tuple[str, ...] = ()

    @property
    def env(self) -> str:
        """The environment variable that gives the default."""
        return "HUBBUB_" + self.name.removeprefix("--").replace("-", "_").upper()


_FLAGS = (
    _Flag("--host", "host", "listen address"),
    _Flag("--port", "port", "TCP port, 0 = any"),
    _Flag("--database", "database", "SQLite database file"),
    _Flag(
        "--postgres-url",
        "postgres_url",
        "store in PostgreSQL instead of SQLite, postgresql://USER[:PASS]@HOST:PORT/DB"
        " (a missing password comes from PGPASSWORD or ~/.pgpass)",
    ),
    _Flag(
        "--redis-url",
        "redis_url",
        "fan-out and presence across nodes through Redis, redis://[:PASS@]HOST:PORT/DB;"
        " needs --postgres-url",
    ),
    _Flag(
        "--presence-ttl",
        "presence_ttl_s",
        "seconds without a heartbeat (sent every second) after which a node counts as dead:"
        " its users show offline and may connect elsewhere (with --redis-url)",
    ),
    _Flag("--max-clients", "max_clients", "most live chat streams, 0 = unlimited"),
    _Flag("--max-message-bytes", "max_message_bytes", "largest message body in bytes"),
    _Flag("--log-level", "log_level", "log level", ("DEBUG", "INFO", "WARNING", "ERROR")),
    _Flag("--log-format", "log_format", "log line format", ("text", "json")),
    _Flag("--tls-cert", "tls_cert", "PEM certificate chain; with --tls-key the server uses TLS"),
    _Flag("--tls-key", "tls_key", "PEM private key for --tls-cert"),
    _Flag("--grace", "grace_s", "graceful shutdown period in seconds"),
    _Flag(
        "--write-timeout",
        "write_timeout_s",
        "seconds a stream write may take before the client is dropped",
    ),
    _Flag("--outbox-events", "outbox_events", "per-stream outbound queue bound, events"),
    _Flag("--keepalive-time-ms", "keepalive_time_ms", "keepalive ping interval in ms"),
    _Flag("--keepalive-timeout-ms", "keepalive_timeout_ms", "keepalive ping ack timeout in ms"),
    _Flag(
        "--metrics-port",
        "metrics_port",
        "serve Prometheus metrics at http://HOST:PORT/metrics; -1 = off, 0 = any port",
    ),
    _Flag(
        "--ldap-url",
        "ldap_url",
        "LDAP server that checks login passwords, ldap://host:port or ldaps://...",
    ),
    _Flag(
        "--ldap-user-dn",
        "ldap_user_dn",
        "DN to bind as, e.g. uid={username},ou=people,dc=example,dc=org",
    ),
    _Flag("--ldap-start-tls", "ldap_start_tls", "StartTLS before the LDAP bind"),
    _Flag(
        "--ldap-ca-file",
        "ldap_ca_file",
        "PEM CA file to verify the LDAP server; system CAs if unset",
    ),
    _Flag("--ldap-only", "ldap_only", "only the LDAP directory decides logins"),
    _Flag("--ldap-timeout", "ldap_timeout_s", "LDAP connect/answer timeout in seconds"),
)


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for logs and error messages)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparsable URL>"
    if parts.query:  # libpq also takes ?password=...
        query = "&".join(
            "password=***" if p.lower().startswith("password=") else p
            for p in parts.query.split("&")
        )
        parts = parts._replace(query=query)
    if parts.password is not None:
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{parts.username or ''}:***@{host}" + (f":{port}" if port is not None else "")
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


def _parse_bool(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the server flags; each defaults to its ``HUBBUB_<NAME>`` environment variable."""
    defaults = ServerConfig()
    for flag in _FLAGS:
        default = getattr(defaults, flag.field)
        raw = os.environ.get(flag.env)
        help_text = f"{flag.help} ({flag.env})"
        if isinstance(default, bool):
            parser.add_argument(
                flag.name,
                dest=flag.field,
                action=argparse.BooleanOptionalAction,
                default=default if raw is None else _parse_bool(raw),
                help=help_text,
            )
            continue
        kind = type(default)
        parser.add_argument(
            flag.name,
            dest=flag.field,
            type=str.upper if flag.field == "log_level" else kind,
            choices=flag.choices or None,
            metavar=None if flag.choices else flag.env.removeprefix("HUBBUB_"),
            default=default if raw is None else kind(raw),
            help=help_text,
        )


def from_arguments(args: argparse.Namespace) -> ServerConfig:
    """Build a :class:`ServerConfig` from parsed flags."""
    return ServerConfig(**{flag.field: getattr(args, flag.field) for flag in _FLAGS})
