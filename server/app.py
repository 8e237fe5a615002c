"""Server assembly: store, auth, hub, gRPC server with health, reflection and keepalive."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, cast

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from hubbub.v1 import messenger_pb2 as pb
from hubbub.v1 import messenger_pb2_grpc as pb_grpc

from .auth import AuthService
from .backup import DatabaseLock
from .broker import Broker
from .broker_memory import MemoryBroker
from .broker_redis import RedisBroker
from .config import ServerConfig, redact_url
from .directory import Directory
from .directory_ldap import ldap_directory
from .errors import ConfigurationError, ListenError
from .groups import GroupService
from .grpc_docs import enable_documented_reflection
from .grpc_interceptor import AuthInterceptor
from .grpc_servicer import MessengerServicer
from .history import HistoryService
from .hub import Hub, HubLimits
from .metrics import Metrics
from .passwords import PasswordHashing
from .presence import PresenceRegistry
from .presence_memory import MemoryPresence
from .presence_redis import RedisPresence
from .store import Store
from .store_postgres import PostgresStore
from .store_sqlite import SqliteStore
from .throttle import Throttle, ThrottlePolicy

log = logging.getLogger(__name__)


class HealthReporter(Protocol):
    """The asyncio ``grpc_health.v1.health.aio.HealthServicer`` as used here (grpc-stubs
    predates it): ``set`` a service's status, ``enter_graceful_shutdown`` = NOT_SERVING
    for every service, permanently (grpc.health.v1 health checking protocol)."""

    async def set(self, service: str, status: health_pb2.HealthCheckResponse.ServingStatus) -> None:
        """Report ``status`` for ``service`` ("" = the whole server) to Check and Watch."""

    async def enter_graceful_shutdown(self) -> None:
        """Report NOT_SERVING for every service from now on."""


SERVICE_NAME = pb.DESCRIPTOR.services_by_name["MessengerService"].full_name


def channel_options(config: ServerConfig) -> list[tuple[str, int]]:
    """gRPC server options: keepalive so dead peers are found within ~30 s (< 60 s)."""
    return [
        # gRPC turns SO_REUSEPORT on by default: a second server on the same port would
        # then start "fine" and the kernel would split connections between the two.
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_time_ms", config.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", config.keepalive_timeout_ms),
        ("grpc.http2.ping_timeout_ms", config.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.max_receive_message_length", max(4 * 1024 * 1024, config.max_message_bytes * 2)),
        ("grpc.max_send_message_length", max(4 * 1024 * 1024, config.max_message_bytes * 2)),
    ]


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    """TLS credentials from ``--tls-cert``/``--tls-key`` (PEM), or None for plaintext.

    Raises:
        ConfigurationError: only one of the two files is given.
        OSError: a file cannot be read.
    """
    if not config.tls_cert and not config.tls_key:
        return None
    if not (config.tls_cert and config.tls_key):
        raise ConfigurationError("--tls-cert and --tls-key go together")
    with open(config.tls_key, "rb") as key, open(config.tls_cert, "rb") as cert:
        return grpc.ssl_server_credentials([(key.read(), cert.read())])


@dataclass
class StopSettings:
    """How :meth:`HubbubServer.stop` stops serving: ``grace_s``, seconds the running
    RPCs get before they are cancelled (``--grace``, or the ``grace_s`` of stop)."""

    grace_s: float


@dataclass
class HubbubServer:
    """A running Hubbub node; ``port`` is the bound TCP port.

    ``resources`` holds everything :func:`start_server` opened, each with the step that
    closes it; :meth:`stop` unwinds it in reverse order of opening (the order of a start
    that failed half-way, too).
    """

    config: ServerConfig
    server: grpc.aio.Server
    store: Store
    hub: Hub
    auth: AuthService
    hashing: PasswordHashing
    health: HealthReporter  # the asyncio servicer: a Watch never holds a thread
    port: int
    resources: contextlib.AsyncExitStack
    stopping: StopSettings
    db_lock: DatabaseLock | None = None  # one server per database (see server/dblock.py)
    metrics_port: int = -1  # Prometheus /metrics port, -1 when off

    async def stop(self, grace_s: float | None = None) -> None:
        """Graceful shutdown: NOT_SERVING, going-away to every stream, drain, then close
        Redis, the store and the database lock (:attr:`resources`, in reverse order of
        opening); a step that waits on a peer gives up after STOP_STEP_TIMEOUT_S seconds.

        Args:
            grace_s: seconds the running RPCs get (None: ``config.grace_s``).
        """
        self.stopping.grace_s = self.config.grace_s if grace_s is None else grace_s
        await self.resources.aclose()


#: Longest wait for one shutdown step (seconds) before stop() goes on without it.
STOP_STEP_TIMEOUT_S = 5.0


async def _bounded(what: str, step: Callable[[], Awaitable[None]]) -> None:
    """Run one shutdown step for at most STOP_STEP_TIMEOUT_S seconds: a step stuck on a
    peer (Redis, PostgreSQL) must not keep the process from exiting; logged if cut short."""
    try:
        async with asyncio.timeout(STOP_STEP_TIMEOUT_S):
            await step()
    except TimeoutError:
        log.warning("%s did not finish within %.0f s; going on", what, STOP_STEP_TIMEOUT_S)


async def _stop_serving(server: grpc.aio.Server, stopping: StopSettings) -> None:
    """Stop the gRPC server, giving running RPCs ``stopping.grace_s`` seconds."""
    await server.stop(stopping.grace_s)


def storage_description(config: ServerConfig) -> str:
    """Where a node keeps its state, for logs (no passwords)."""
    if config.postgres_url:
        where = f"PostgreSQL {redact_url(config.postgres_url)}"
    else:
        where = f"database {config.database}"
    if config.redis_url:
        where += f", Redis {redact_url(config.redis_url)}"
    return where


def throttle_policy(config: ServerConfig) -> ThrottlePolicy:
    """The login/registration limits from the flags (the rest are the documented defaults).

    Raises:
        ConfigurationError: a limit is not in the ``limits`` notation ("10 per hour").
    """
    policy = ThrottlePolicy(
        register_per_address=config.register_limit,
        login_per_address=config.login_address_limit,
    )
    try:
        policy.validate()
    except ValueError as exc:
        raise ConfigurationError(
            f"bad --register-limit / --login-address-limit ({exc}); write e.g. '10 per hour'"
        ) from None
    return policy


async def _open_store(
    config: ServerConfig, resources: contextlib.AsyncExitStack
) -> tuple[Store, DatabaseLock | None]:
    """PostgreSQL when ``--postgres-url`` is set, else the SQLite file under its lock;
    their closing goes on ``resources``.

    Raises:
        ConfigurationError: ``--redis-url`` without ``--postgres-url``.
        RuntimeError: the database is unusable or (SQLite) in use by another server
            (``DatabaseInUse``).
    """
    if config.redis_url and not config.postgres_url:
        raise ConfigurationError(
            "--redis-url needs --postgres-url: nodes that share Redis must share one "
            "PostgreSQL database (the SQLite file belongs to one node)"
        )
    if config.postgres_url:
        postgres = PostgresStore(config.postgres_url)
        await postgres.open()
        resources.push_async_callback(_bounded, "store close", postgres.close)
        return postgres, None  # PostgreSQL serves many nodes: no file lock
    # One server per SQLite database: an exclusive flock on DB.lock for the server's
    # lifetime, so a second server, `restore` and `import` are refused (DatabaseInUse,
    # a RuntimeError).
    db_lock = DatabaseLock.acquire(config.database, shared_in_process=True)
    resources.callback(db_lock.release)
    sqlite = SqliteStore(config.database)
    await sqlite.open()
    resources.push_async_callback(_bounded, "store close", sqlite.close)
    return sqlite, db_lock


async def _open_fanout(
    config: ServerConfig, resources: contextlib.AsyncExitStack
) -> tuple[Broker, PresenceRegistry]:
    """Redis broker and presence with ``--redis-url``, else the in-process ones; closing
    the Redis ones goes on ``resources``.

    Raises:
        RuntimeError: Redis cannot be reached.
    """
    if not config.redis_url:
        return MemoryBroker(), MemoryPresence()
    broker = RedisBroker(config.redis_url)
    resources.push_async_callback(_bounded, "broker close", broker.aclose)
    presence = RedisPresence(config.redis_url, ttl_s=config.presence_ttl_s)
    resources.push_async_callback(_bounded, "presence close", presence.close)
    await presence.start()
    return broker, presence


async def start_server(config: ServerConfig) -> HubbubServer:
    """Open the store, build the services and start listening.

    Everything opened is closed again, in reverse order, if a later step fails.

    Raises:
        ListenError: the port cannot be bound.
        ConfigurationError: inconsistent or malformed settings (TLS, limits, Redis
            without PostgreSQL).
        RuntimeError: the database is unusable or in use by another server
            (``DatabaseInUse``), or the LDAP settings are inconsistent.
    """
    directory = ldap_directory(config)
    policy = throttle_policy(config)
    try:
        credentials = server_credentials(config)
    except OSError as exc:
        raise ConfigurationError(f"cannot read the TLS files: {exc}") from None
    resources = contextlib.AsyncExitStack()
    try:
        return await _start(config, resources, directory, policy, credentials)
    except BaseException:
        try:
            await resources.aclose()
        except Exception:  # the start's own error is the one to report
            log.exception("closing what a failed start had opened failed")
        raise


async def _start(
    config: ServerConfig,
    resources: contextlib.AsyncExitStack,
    directory: Directory | None,
    policy: ThrottlePolicy,
    credentials: grpc.ServerCredentials | None,
) -> HubbubServer:
    """Open and start the parts of a node in order, each one's closing pushed on
    ``resources`` as soon as it is open (so they close in reverse order)."""
    store, db_lock = await _open_store(config, resources)
    broker, presence = await _open_fanout(config, resources)
    hashing = PasswordHashing()
    resources.callback(hashing.close)
    throttle = Throttle(policy, redis_url=config.redis_url)
    resources.push_async_callback(_bounded, "throttle close", throttle.close)
    auth = AuthService(
        store,
        hashing,
        throttle=throttle,
        directory=directory,
        directory_only=config.ldap_only,
        registration_open=config.registration == "open",
    )
    hub = Hub(
        store,
        broker,
        presence,
        HubLimits(
            max_clients=config.max_clients,
            max_message_bytes=config.max_message_bytes,
            outbox_events=config.outbox_events,
            outbox_bytes=config.outbox_bytes,
        ),
        Metrics(),
    )
    resources.push_async_callback(hub.metrics.stop)
    # Stream cleanups outlive their cancelled handlers: wait for them after the server.
    resources.push_async_callback(hub.wait_closed)
    server = grpc.aio.server(interceptors=[AuthInterceptor(auth)], options=channel_options(config))
    stopping = StopSettings(config.grace_s)
    resources.push_async_callback(_stop_serving, server, stopping)
    resources.push_async_callback(_bounded, "hub shutdown", hub.shutdown)
    await hub.start()
    hub.metrics.start_sampling()
    pb_grpc.add_MessengerServiceServicer_to_server(
        MessengerServicer(
            auth, hub, GroupService(hub), HistoryService(hub), config.write_timeout_s
        ),
        server,
    )
    # The asyncio servicer: the synchronous one blocks a worker thread per Watch call,
    # so a few abandoned Watches starve Check and keep the server from exiting.
    async_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(async_servicer, server)
    health_servicer = cast(HealthReporter, async_servicer)
    resources.push_async_callback(health_servicer.enter_graceful_shutdown)  # first to run
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    # Reflection with the .proto comments, so `grpcurl describe` shows the API docs.
    enable_documented_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    address = f"{config.host}:{config.port}"
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError:  # grpcio raises "Failed to bind" (older versions returned 0)
        port = 0
    if port == 0:
        raise ListenError(f"cannot listen on {address} (address in use or not local)")
    await server.start()
    metrics_port = -1
    if config.metrics_port >= 0:
        metrics_port = hub.metrics.serve_http(config.host, config.metrics_port)
    return HubbubServer(
        config,
        server,
        store,
        hub,
        auth,
        hashing,
        health_servicer,
        port,
        resources,
        stopping,
        db_lock,
        metrics_port,
    )


async def serve(config: ServerConfig) -> None:
    """Run until SIGINT/SIGTERM, then shut down gracefully.

    The signal handlers are installed before the server starts, so a signal that
    arrives as soon as "listening on" is printed (or during start-up) still shuts
    the server down gracefully instead of killing the process.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    node = await start_server(config)
    print(f"listening on {config.host}:{node.port}", flush=True)
    if node.metrics_port >= 0:
        print(f"metrics on http://{config.host}:{node.metrics_port}/metrics", flush=True)
    log.info(
        "hubbub-server listening on %s:%d (%s)",
        config.host,
        node.port,
        storage_description(config),
    )
    await stop.wait()
    log.info("shutting down (grace %.1f s)", config.grace_s)
    await node.stop()
    log.info("stopped")
