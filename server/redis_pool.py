"""Redis connections of one node: a bounded pool whose callers wait for a free connection.

redis-py's default pool (``redis.asyncio.from_url``) raises ``MaxConnectionsError``
("Too many connections") when more than 100 commands are in flight at once, which a
burst of sends answered by one group commit reaches (each send looks up presence and
publishes). A :class:`redis.asyncio.BlockingConnectionPool` makes the extra callers
wait for a connection instead (https://redis.readthedocs.io/en/stable/connections.html).
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

__all__ = ["MAX_CONNECTIONS", "POOL_TIMEOUT_S", "blocking_pool", "connect"]

#: Connections per pool (one pool per client object: presence, broker publisher).
MAX_CONNECTIONS = 64
#: Longest wait (s) for a free pooled connection before ``ConnectionError``.
POOL_TIMEOUT_S = 10.0


def blocking_pool(url: str, **options: Any) -> aioredis.BlockingConnectionPool:
    """A pool of at most :data:`MAX_CONNECTIONS` connections to ``url`` whose callers wait
    up to :data:`POOL_TIMEOUT_S` for a free one.

    Args:
        url: ``redis://[:password@]host:port/db`` or ``rediss://…``.
        options: connection options of redis-py (``socket_timeout`` in s, …).

    Raises:
        ValueError: ``url`` is not a Redis URL.
    """
    return aioredis.BlockingConnectionPool.from_url(
        url, max_connections=MAX_CONNECTIONS, timeout=POOL_TIMEOUT_S, **options
    )


def connect(url: str, **options: Any) -> aioredis.Redis:
    """A Redis client on a :func:`blocking_pool` to ``url`` (same arguments and errors)."""
    return aioredis.Redis.from_pool(blocking_pool(url, **options))
