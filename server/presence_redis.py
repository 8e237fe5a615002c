"""Presence across nodes in Redis: one key per online user, claimed atomically, kept alive by TTL.

* ``claim``: ``SET {prefix}:online:<user> "<node> <since_ms>" NX PX <ttl>`` (in a
  Lua script that also records the change time), so exactly one stream in the
  whole deployment holds a user.
* A heartbeat task of the node refreshes the TTL of every claim it holds, every
  ``ttl/3``. When a node dies its claims expire after at most ``ttl`` and its
  users are offline (and may connect to another node).
* ``release`` deletes the key only if this node still holds it (compare-and-delete
  in Lua), so a node that lost a claim never removes another node's.
* ``online()`` reads the index set ``{prefix}:online`` and the claim keys;
  members whose claim expired are dropped from the index (with the time they
  were noticed as their last change). ``last_change()`` is the hash
  ``{prefix}:changed``.

See https://redis.io/docs/latest/commands/set/ (NX/PX) and
https://redis.io/docs/latest/develop/interact/programmability/eval-intro/.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import datetime

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .config import redact_url
from .models import from_ms, to_ms, utc_now

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 30.0

# KEYS: claim key, index set, changes hash. ARGV: value, ttl ms, username, change ms.
_CLAIM = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    redis.call('SADD', KEYS[2], ARGV[3])
    redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
    return 1
end
return 0
"""
# KEYS: claim key, index set, changes hash. ARGV: value, username, change ms.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('DEL', KEYS[1])
    redis.call('SREM', KEYS[2], ARGV[2])
    redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
    return 1
end
return 0
"""
# KEYS: claim key, index set. ARGV: value, ttl ms, username.
# 1 = refreshed, 2 = had expired and was taken back, 0 = another node holds it now.
_REFRESH = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    redis.call('SADD', KEYS[2], ARGV[3])
    return 1
end
if not current then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    redis.call('SADD', KEYS[2], ARGV[3])
    return 2
end
return 0
"""
# KEYS: index set, changes hash, then the claim key of each ARGV username after ARGV[1].
# ARGV: change ms, usernames whose claim looked expired. Returns the usernames this call
# removed: SREM succeeds for one caller only, so each expiry is reported exactly once.
_PURGE = """
local removed = {}
for i = 2, #ARGV do
    if redis.call('EXISTS', KEYS[i + 1]) == 0 and redis.call('SREM', KEYS[1], ARGV[i]) == 1 then
        redis.call('HSET', KEYS[2], ARGV[i], ARGV[1])
        table.insert(removed, ARGV[i])
    end
end
return removed
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisPresence:
    """:class:`~hubbub.server.presence.PresenceRegistry` shared by every node through Redis.

    Args:
        url: ``redis://[:password@]host:port/db`` (or ``rediss://`` for TLS).
        ttl_s: how long a claim outlives its node's last heartbeat.
        prefix: key prefix, so several deployments can share one Redis.
    """

    def __init__(self, url: str, *, ttl_s: float = DEFAULT_TTL_S, prefix: str = "hubbub") -> None:
        if ttl_s <= 0:
            raise ValueError("the presence TTL must be positive")
        self.url = url
        self.node_id = uuid.uuid4().hex
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self._prefix = prefix
        self._index = f"{prefix}:online"
        self._changes = f"{prefix}:changed"
        self._redis: aioredis.Redis = aioredis.from_url(
            url, socket_connect_timeout=5, socket_timeout=10, health_check_interval=15
        )
        self._claims: dict[str, str] = {}  # username → value of this node's claim
        self._claim = self._redis.register_script(_CLAIM)
        self._release = self._redis.register_script(_RELEASE)
        self._refresh = self._redis.register_script(_REFRESH)
        self._purge = self._redis.register_script(_PURGE)
        self._heartbeat_task: asyncio.Task[None] | None = None

    def _key(self, username: str) -> str:
        return f"{self._prefix}:online:{username}"

    async def start(self) -> None:
        """Check the connection and start the heartbeat.

        Raises:
            RuntimeError: Redis cannot be reached.
        """
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            raise RuntimeError(
                f"cannot connect to Redis at {redact_url(self.url)}: {exc}"
            ) from None
        if self._heartbeat_task is None:
            self._heartbeat_task = asyncio.create_task(self._heartbeat(), name="presence-heartbeat")

    async def close(self) -> None:
        """Stop the heartbeat and close the connections (claims still held expire by TTL)."""
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task
            self._heartbeat_task = None
        await self._redis.aclose()

    async def claim(self, username: str, at: datetime) -> bool:
        """Mark ``username`` online on this node; False if any node holds it already."""
        value = f"{self.node_id} {to_ms(at)}"
        claimed = await self._claim(
            keys=[self._key(username), self._index, self._changes],
            args=[value, self.ttl_ms, username, to_ms(at)],
        )
        if claimed:
            self._claims[username] = value
        return bool(claimed)

    async def release(self, username: str, at: datetime) -> None:
        """Mark ``username`` offline if this node holds its claim."""
        value = self._claims.pop(username, None)
        if value is None:
            return
        released = await self._release(
            keys=[self._key(username), self._index, self._changes],
            args=[value, username, to_ms(at)],
        )
        if not released:
            log.warning("presence of %s was no longer held by this node", username)

    async def is_online(self, username: str) -> bool:
        """True if some node holds an unexpired claim for ``username``."""
        return bool(await self._redis.exists(self._key(username)))

    @property
    def sweep_interval_s(self) -> float:
        """How often a hub should call :meth:`sweep` (a third of the TTL), seconds."""
        return self.ttl_ms / 3000

    async def _scan(self) -> tuple[dict[str, datetime], list[str]]:
        """(online users → since, indexed users whose claim has expired)."""
        names = sorted(_text(n) for n in await self._redis.smembers(self._index))
        if not names:
            return {}, []
        values = await self._redis.mget([self._key(n) for n in names])
        online: dict[str, datetime] = {}
        expired: list[str] = []
        for name, value in zip(names, values, strict=True):
            if value is None:
                expired.append(name)
                continue
            _, _, since = _text(value).partition(" ")
            online[name] = from_ms(int(since)) if since.isdigit() else utc_now()
        return online, expired

    async def online(self) -> dict[str, datetime]:
        """Online usernames (on any node) mapped to when they came online."""
        online, _ = await self._scan()
        return online

    async def sweep(self) -> list[tuple[str, datetime]]:
        """Users whose claim expired (their node died), each returned to one caller only."""
        _, expired = await self._scan()
        if not expired:
            return []
        now = utc_now()
        removed = await self._purge(
            keys=[self._index, self._changes, *(self._key(n) for n in expired)],
            args=[to_ms(now), *expired],
        )
        return [(_text(name), now) for name in removed or ()]

    async def last_change(self) -> dict[str, datetime]:
        """Every known username mapped to its last presence change."""
        raw = await self._redis.hgetall(self._changes)
        return {_text(k): from_ms(int(v)) for k, v in raw.items()}

    async def _heartbeat(self) -> None:
        """Refresh this node's claims every ttl/3 until cancelled."""
        interval = self.ttl_ms / 3000
        while True:
            await asyncio.sleep(interval)
            claims = dict(self._claims)
            if not claims:
                continue
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for name, value in claims.items():
                        await self._refresh(  # queued in the pipeline
                            keys=[self._key(name), self._index],
                            args=[value, self.ttl_ms, name],
                            client=pipe,
                        )
                    results = await pipe.execute()
            except (RedisError, OSError) as exc:
                log.warning("presence heartbeat failed (%s); retrying in %.1f s", exc, interval)
                continue
            for (name, _), result in zip(claims.items(), results, strict=True):
                if result == 2:
                    log.warning("presence claim of %s had expired; taken back", name)
                elif result == 0 and self._claims.get(name) == claims[name]:
                    log.warning("presence claim of %s is held by another node", name)
