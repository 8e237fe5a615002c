"""Presence across nodes in Redis: one claim per online user, one heartbeat per node.

* Every node keeps a liveness key ``{prefix}:node:<node id>`` that expires
  ``ttl`` after its last refresh; the node refreshes it every ``min(1 s, ttl/3)``.
  A node whose key has expired is *dead*.
* A claim ``{prefix}:online:<user>`` = ``"<node id> <since ms> <holder>"`` has no
  TTL of its own: it is valid while its node is alive. ``claim`` (a Lua script, so
  atomic across nodes) grants a user who is offline, whose claim names a dead
  node, or whose current holder equals the ``takeover`` id the caller shows; it
  returns the holder it replaced so the caller can end that stream.
* ``release`` deletes the claim only if this node and this holder still hold it
  (compare-and-delete in Lua), so a stream that was taken over never removes its
  successor's claim.
* ``online()``/``is_online()`` count only claims of live nodes, so a dead node's
  users are offline as soon as its key expires; ``sweep()`` (every hub, each
  second) deletes those claims and reports each user to exactly one caller, which
  announces them offline. ``last_change()`` is the hash ``{prefix}:changed``.
* If a node's own key had expired (the node was paused longer than ``ttl``), its
  heartbeat re-asserts the claims it still holds and reports the ones taken meanwhile
  (:meth:`RedisPresence.on_claim_lost`), whose streams the hub ends.

Needs Redis 6.2 or later (``SET ... GET``). See
https://redis.io/docs/latest/commands/set/ and
https://redis.io/docs/latest/develop/interact/programmability/eval-intro/.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Collection
from datetime import datetime

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from . import redis_pool
from .config import redact_url
from .models import from_ms, to_ms, utc_now
from .presence import Claim, LostClaimHandler

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 5.0
MAX_HEARTBEAT_S = 1.0

# A claim value: "<node> <since ms> <holder>" (holder may be empty).
_PARSE = "local node, since, holder = string.match(cur, '^(%S+) (%S+) ?(%S*)$')\n"

# KEYS: claim key, index set, changes hash.
# ARGV: node id, since ms, holder, takeover id, username, node key prefix.
# Returns {granted, replaced holder, replaced node}.
_CLAIM = (
    """
local cur = redis.call('GET', KEYS[1])
local replaced, replaced_node = '', ''
if cur then
"""
    + _PARSE
    + """
    node = node or ''
    holder = holder or ''
    local alive = redis.call('EXISTS', ARGV[6] .. node) == 1
    if alive and (ARGV[4] == '' or holder ~= ARGV[4]) then
        return {0, '', ''}
    end
    replaced, replaced_node = holder, node
end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. ARGV[3])
redis.call('SADD', KEYS[2], ARGV[5])
redis.call('HSET', KEYS[3], ARGV[5], ARGV[2])
return {1, replaced, replaced_node}
"""
)
# KEYS: claim key, index set, changes hash. ARGV: node id, holder, username, change ms.
_RELEASE = (
    """
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
"""
    + _PARSE
    + """
if node == ARGV[1] and (holder or '') == ARGV[2] then
    redis.call('DEL', KEYS[1])
    redis.call('SREM', KEYS[2], ARGV[3])
    redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
    return 1
end
return 0
"""
)
# KEYS: claim key. ARGV: node key prefix. 1 if the claim exists and its node is alive.
_IS_ONLINE = (
    """
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
"""
    + _PARSE
    + """
return redis.call('EXISTS', ARGV[1] .. (node or ''))
"""
)
# KEYS: the claim key of each username asked about. ARGV: node key prefix.
# Returns one 0/1 per key, as _IS_ONLINE would.
_IS_ONLINE_MANY = (
    """
local result = {}
for i = 1, #KEYS do
    local cur = redis.call('GET', KEYS[i])
    local online = 0
    if cur then
"""
    + _PARSE
    + """
        online = redis.call('EXISTS', ARGV[1] .. (node or ''))
    end
    result[i] = online
end
return result
"""
)
# KEYS: index set, changes hash, then the claim key of each username in ARGV[3..].
# ARGV: change ms, node key prefix, usernames that looked dead. Deletes the claims that
# are still missing or name a dead node and returns those usernames: SREM succeeds for
# one caller only, so each is reported exactly once.
_PURGE = (
    """
local removed = {}
for i = 3, #ARGV do
    local key = KEYS[i]
    local cur = redis.call('GET', key)
    local dead = true
    if cur then
"""
    + _PARSE
    + """
        if redis.call('EXISTS', ARGV[2] .. (node or '')) == 1 then dead = false end
    end
    if dead then
        if cur then redis.call('DEL', key) end
        if redis.call('SREM', KEYS[1], ARGV[i]) == 1 then
            redis.call('HSET', KEYS[2], ARGV[i], ARGV[1])
            table.insert(removed, ARGV[i])
        end
    end
end
return removed
"""
)
# KEYS: claim key, index set. ARGV: value, username.
# 1 = still ours, 2 = was gone and is ours again, 0 = another stream holds it now.
_REASSERT = """
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then return 1 end
if not cur then
    redis.call('SET', KEYS[1], ARGV[1])
    redis.call('SADD', KEYS[2], ARGV[2])
    return 2
end
return 0
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisPresence:
    """:class:`~hubbub.server.presence.PresenceRegistry` shared by every node through Redis.

    Args:
        url: ``redis://[:password@]host:port/db`` (or ``rediss://`` for TLS).
        ttl_s: seconds without a heartbeat after which this node counts as dead (its
            users are offline and may connect to another node). The heartbeat runs
            every ``min(1, ttl_s / 3)`` seconds.
        prefix: key prefix, so several deployments can share one Redis.

    Raises:
        ValueError: ``ttl_s`` is not positive.
    """

    def __init__(self, url: str, *, ttl_s: float = DEFAULT_TTL_S, prefix: str = "hubbub") -> None:
        if ttl_s <= 0:
            raise ValueError("the presence TTL must be positive")
        self.url = url
        self.node_id = uuid.uuid4().hex
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self.heartbeat_s = min(MAX_HEARTBEAT_S, ttl_s / 3)
        self._prefix = prefix
        self._index = f"{prefix}:online"
        self._changes = f"{prefix}:changed"
        self._node_prefix = f"{prefix}:node:"
        self._redis: aioredis.Redis = redis_pool.connect(
            url, socket_connect_timeout=5, socket_timeout=10, health_check_interval=15
        )
        self._claims: dict[str, str] = {}  # username → value of this node's claim
        self._lost_handler: LostClaimHandler | None = None
        self._claim = self._redis.register_script(_CLAIM)
        self._release = self._redis.register_script(_RELEASE)
        self._is_online = self._redis.register_script(_IS_ONLINE)
        self._is_online_many = self._redis.register_script(_IS_ONLINE_MANY)
        self._purge = self._redis.register_script(_PURGE)
        self._reassert = self._redis.register_script(_REASSERT)
        self._heartbeat_task: asyncio.Task[None] | None = None

    def _key(self, username: str) -> str:
        return f"{self._prefix}:online:{username}"

    @property
    def node_key(self) -> str:
        """This node's liveness key."""
        return self._node_prefix + self.node_id

    async def start(self) -> None:
        """Check the connection, mark this node alive and start its heartbeat.

        Raises:
            RuntimeError: Redis cannot be reached.
        """
        try:
            await self._redis.set(self.node_key, "1", px=self.ttl_ms)
        except (RedisError, OSError) as exc:
            raise RuntimeError(
                f"cannot connect to Redis at {redact_url(self.url)}: {exc}"
            ) from None
        if self._heartbeat_task is None:
            self._heartbeat_task = asyncio.create_task(self._heartbeat(), name="presence-heartbeat")

    async def close(self) -> None:
        """Stop the heartbeat, mark this node dead (claims still held are swept by the
        other nodes) and close the connection."""
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task
            self._heartbeat_task = None
        with contextlib.suppress(RedisError, OSError):
            await self._redis.delete(self.node_key)
        await self._redis.aclose()

    async def claim(self, username: str, at: datetime, holder: str, takeover: str = "") -> Claim:
        """Mark ``username`` online on this node for ``holder`` (see the module docstring)."""
        value = f"{self.node_id} {to_ms(at)} {holder}"
        granted, replaced, node = await self._claim(
            keys=[self._key(username), self._index, self._changes],
            args=[self.node_id, to_ms(at), holder, takeover, username, self._node_prefix],
        )
        if not granted:
            return Claim(False)
        self._claims[username] = value
        return Claim(True, _text(replaced), bool(replaced) and _text(node) == self.node_id)

    async def release(self, username: str, at: datetime, holder: str) -> bool:
        """Mark ``username`` offline if this node and ``holder`` still hold its claim."""
        value = self._claims.get(username)
        if value is not None and value.endswith(f" {holder}"):
            del self._claims[username]
        released = await self._release(
            keys=[self._key(username), self._index, self._changes],
            args=[self.node_id, holder, username, to_ms(at)],
        )
        return bool(released)

    async def is_online(self, username: str) -> bool:
        """True if a live node holds a claim for ``username``."""
        return bool(await self._is_online(keys=[self._key(username)], args=[self._node_prefix]))

    async def is_online_many(self, usernames: Collection[str]) -> set[str]:
        """The names of ``usernames`` a live node holds a claim for: one script call (one
        round trip) whatever their number, none for no names."""
        names = list(dict.fromkeys(usernames))
        if not names:
            return set()
        flags = await self._is_online_many(
            keys=[self._key(n) for n in names], args=[self._node_prefix]
        )
        return {name for name, flag in zip(names, flags, strict=True) if flag}

    def on_claim_lost(self, handler: LostClaimHandler) -> None:
        """Call ``handler(username, holder)`` when re-asserting finds a claim of this node
        held by another stream (the node was counted dead meanwhile)."""
        self._lost_handler = handler

    @property
    def shared(self) -> bool:
        """True: every node of the deployment claims here."""
        return True

    @property
    def sweep_interval_s(self) -> float:
        """How often a hub should call :meth:`sweep` (the heartbeat interval), seconds."""
        return self.heartbeat_s

    async def _scan(self) -> tuple[dict[str, datetime], list[str]]:
        """(online users of live nodes → since, indexed users whose claim is gone or dead)."""
        names = sorted(_text(n) for n in await self._redis.smembers(self._index))
        if not names:
            return {}, []
        values = await self._redis.mget([self._key(n) for n in names])
        claims: dict[str, tuple[str, str]] = {}
        dead: list[str] = []
        for name, value in zip(names, values, strict=True):
            if value is None:
                dead.append(name)
                continue
            node, _, rest = _text(value).partition(" ")
            since, _, _ = rest.partition(" ")
            claims[name] = (node, since)
        if not claims:
            return {}, dead
        nodes = sorted({node for node, _ in claims.values()})
        alive_flags = await self._redis.mget([self._node_prefix + n for n in nodes])
        alive = {n for n, flag in zip(nodes, alive_flags, strict=True) if flag is not None}
        online: dict[str, datetime] = {}
        for name, (node, since) in claims.items():
            if node not in alive:
                dead.append(name)
                continue
            online[name] = from_ms(int(since)) if since.isdigit() else utc_now()
        return online, dead

    async def online(self) -> dict[str, datetime]:
        """Online usernames (on live nodes) mapped to when they came online."""
        online, _ = await self._scan()
        return online

    async def sweep(self) -> list[tuple[str, datetime]]:
        """Release the claims of dead nodes; each user is returned to one caller only."""
        _, dead = await self._scan()
        if not dead:
            return []
        now = utc_now()
        removed = await self._purge(
            keys=[self._index, self._changes, *(self._key(n) for n in dead)],
            args=[to_ms(now), self._node_prefix, *dead],
        )
        return [(_text(name), now) for name in removed or ()]

    async def last_change(self) -> dict[str, datetime]:
        """Every known username mapped to its last presence change."""
        raw = await self._redis.hgetall(self._changes)
        return {_text(k): from_ms(int(v)) for k, v in raw.items()}

    async def _heartbeat(self) -> None:
        """Refresh this node's liveness key every ``heartbeat_s`` until cancelled."""
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                previous = await self._redis.set(self.node_key, "1", px=self.ttl_ms, get=True)
                if previous is None and self._claims:
                    await self._reassert_claims()
            except (RedisError, OSError) as exc:
                log.warning(
                    "presence heartbeat failed (%s); retrying in %.1f s", exc, self.heartbeat_s
                )

    async def _reassert_claims(self) -> None:
        """This node was counted dead for a while: keep the claims nobody took meanwhile."""
        log.warning("presence: this node's heartbeat had lapsed; re-asserting its claims")
        for name, value in list(self._claims.items()):
            result = await self._reassert(keys=[self._key(name), self._index], args=[value, name])
            if result == 0 and self._claims.get(name) == value:
                log.warning("presence claim of %s is held by another stream now", name)
                del self._claims[name]
                if self._lost_handler is not None:
                    try:
                        self._lost_handler(name, value.rpartition(" ")[2])
                    except Exception:  # the handler's failure must not stop the heartbeat
                        log.exception("presence: the claim-lost handler failed for %s", name)
