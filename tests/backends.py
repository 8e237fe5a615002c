"""Throw-away PostgreSQL and Redis servers for tests of the many-node backends.

* ``postgres_server`` (session): ``initdb`` + ``pg_ctl`` from Debian's
  ``/usr/lib/postgresql/*/bin`` in a temp directory, listening on a free
  127.0.0.1 port with trust authentication (no password) and its socket in the
  temp directory. PostgreSQL refuses to run as root, so as root the commands
  run as the ``postgres`` OS user (``runuser -u postgres --``).
* ``redis_server`` (session): ``redis-server --port FREE --save '' --appendonly no``.
* ``postgres_url`` (per test): a new empty database on that server, dropped afterwards.
* ``redis_url`` (per test): the Redis URL after ``FLUSHALL``.

The system services (port 5432 / 6379, ``/var/run/postgresql``) are never used.
The test cluster runs with ``fsync=off`` for speed; the store itself still asks
for ``synchronous_commit = on`` as in production.
Missing binaries make the fixture FAIL with the install command, never skip.
Test modules import the fixtures they use (``from tests.backends import …``);
each session-wide server is started once however many modules import it.

Scripts (``make torture ARGS=--cluster``) use the same servers without pytest:
:func:`start_postgres` / :func:`stop_postgres`, :func:`start_redis` /
:func:`stop_redis`, which raise :class:`BackendUnavailable` instead of failing a test.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

INSTALL_HINT = (
    "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql redis-server"
)
PG_USER = "postgres"


class BackendUnavailable(RuntimeError):
    """A throw-away PostgreSQL or Redis could not be started or used; the message says why
    (and, for missing binaries, the apt-get line that installs them)."""


@contextmanager
def _fail_test() -> Iterator[None]:
    """Turn BackendUnavailable into a test failure (never a skip)."""
    try:
        yield
    except BackendUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_port(port: int, proc: subprocess.Popen[bytes] | None, what: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    text = log.read_text(errors="replace") if log.exists() else ""
    raise BackendUnavailable(f"{what} did not start on port {port}:\n{text[-3000:]}")


# -- one instance per session, however many test modules import the fixture ---------

_shared: dict[str, tuple[Any, int]] = {}


def _acquire(name: str, start: Callable[[], Any]) -> Any:
    instance, users = _shared.get(name, (None, 0))
    if users == 0:
        instance = start()
    _shared[name] = (instance, users + 1)
    return instance


def _release(name: str, stop: Callable[[Any], None]) -> None:
    instance, users = _shared[name]
    if users == 1:
        del _shared[name]
        stop(instance)
    else:
        _shared[name] = (instance, users - 1)


# -- PostgreSQL ----------------------------------------------------------------------


@dataclass
class PostgresServer:
    """A running throw-away PostgreSQL cluster (superuser ``postgres``, trust auth)."""

    port: int
    data_dir: Path
    bin_dir: Path
    root: Path

    def url(self, database: str = "postgres") -> str:
        """A ``postgresql://`` URL for ``database``."""
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str) -> None:
        """Run one SQL command as the superuser; raises BackendUnavailable on error."""
        done = subprocess.run(
            [
                str(self.bin_dir / "psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                self.url(),
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise BackendUnavailable(f"psql {sql!r} failed:\n{done.stdout}{done.stderr}")


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", PG_USER, "--", *cmd] if os.geteuid() == 0 else cmd


def _postgres_bin() -> Path:
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise BackendUnavailable(
        f"PostgreSQL tests need initdb/pg_ctl (Debian package postgresql). Install: {INSTALL_HINT}"
    )


def _run(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise BackendUnavailable(f"{what} failed ({done.returncode}):\n{done.stdout}{done.stderr}")


def start_postgres() -> PostgresServer:
    """Start a throw-away PostgreSQL cluster on a free port (see the module docstring).

    Raises:
        BackendUnavailable: the binaries or the ``postgres`` OS user (as root) are missing,
            or the cluster did not start.
    """
    bin_dir = _postgres_bin()
    missing = [n for n in ("initdb", "pg_ctl", "psql") if not (bin_dir / n).exists()]
    if missing:
        raise BackendUnavailable(f"missing {', '.join(missing)}; install: {INSTALL_HINT}")
    if os.geteuid() == 0:
        try:
            import pwd

            pw = pwd.getpwnam(PG_USER)
        except KeyError:
            raise BackendUnavailable(
                f"running as root needs the '{PG_USER}' OS user; install: {INSTALL_HINT}"
            ) from None
    root = Path(tempfile.mkdtemp(prefix="hubbub-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        os.chown(root, pw.pw_uid, pw.pw_gid)
    port = free_port()
    _run(
        _as_postgres(
            [
                str(bin_dir / "initdb"),
                "-D", str(data), "-U", PG_USER, "-A", "trust",
                "-E", "UTF8", "--locale", "C.UTF-8", "--no-sync",
            ]
        ),
        "initdb",
    )  # fmt: skip
    log = root / "postgres.log"
    options = (
        f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root}"
        " -c fsync=off -c full_page_writes=off -c max_connections=300"
    )
    _run(
        _as_postgres(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(log),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ]
        ),
        "pg_ctl start",
    )
    server = PostgresServer(port, data, bin_dir, root)
    _wait_port(port, None, "PostgreSQL", log)
    return server


def stop_postgres(server: PostgresServer) -> None:
    """Stop the cluster (``pg_ctl stop -m immediate``) and delete its directory."""
    subprocess.run(
        _as_postgres(
            [
                str(server.bin_dir / "pg_ctl"),
                "-D",
                str(server.data_dir),
                "-m",
                "immediate",
                "-w",
                "stop",
            ]
        ),
        capture_output=True,
        timeout=60,
        check=False,
    )
    shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throw-away PostgreSQL cluster for the whole test session."""
    with _fail_test():
        server = _acquire("postgres", start_postgres)
    yield server
    _release("postgres", stop_postgres)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a new, empty database (dropped after the test)."""
    name = f"hubbub_{uuid.uuid4().hex[:12]}"
    with _fail_test():
        postgres_server.psql(f'CREATE DATABASE "{name}"')
    yield postgres_server.url(name)
    with _fail_test():
        postgres_server.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- Redis ---------------------------------------------------------------------------


@dataclass
class RedisServer:
    """A running throw-away redis-server (no persistence)."""

    port: int
    proc: subprocess.Popen[bytes]
    root: Path

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"


def start_redis() -> RedisServer:
    """Start a throw-away ``redis-server`` on a free port, without persistence.

    Raises:
        BackendUnavailable: ``redis-server`` is missing or did not start.
    """
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.access(binary, os.X_OK):
        raise BackendUnavailable(f"Redis tests need redis-server; install: {INSTALL_HINT}")
    root = Path(tempfile.mkdtemp(prefix="hubbub-redis-"))
    port = free_port()
    log = root / "redis.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(root),
                "--daemonize",
                "no",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    _wait_port(port, proc, "redis-server", log)
    return RedisServer(port, proc, root)


def stop_redis(server: RedisServer) -> None:
    """Stop the server (SIGTERM, then SIGKILL after 10 s) and delete its directory."""
    server.proc.terminate()
    try:
        server.proc.wait(10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(10)
    shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A throw-away redis-server for the whole test session."""
    with _fail_test():
        server = _acquire("redis", start_redis)
    yield server
    _release("redis", stop_redis)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The Redis URL, emptied (``FLUSHALL``) for this test."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=redis_server.port)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url
