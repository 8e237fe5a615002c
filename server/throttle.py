"""Throttling of password guesses and registrations: the whole policy in one place.

Every limit is a *moving window* of the `limits` library
(https://limits.readthedocs.io), kept in :class:`limits.aio.storage.MemoryStorage`
on a single node or in Redis (``--redis-url``) so that every node of a cluster
shares the same counters. An attempt is *reserved* (``hit``) before the
password is checked: the storage adds the entry atomically (a lock per key in
memory, a Lua script in Redis), so however many guesses arrive in parallel, at
most the window's budget is ever evaluated; the rest are refused before any
argon2 work with ``retry_after_s`` (OWASP Authentication Cheat Sheet, "Protect
against automated attacks": throttle, and count attempts rather than failures
so that a burst cannot outrun the counter).

Login (the policy, with the defaults of :class:`ThrottlePolicy`):

1. **(username, client address)**: 5 attempts per 15 minutes. This is the
   budget of one guesser against one account. A successful login clears it.
2. **client address**: ``--login-address-limit``, 100 attempts per 15 minutes
   over all usernames (password spraying: one password tried against many names).
3. **username ceiling**: 20 attempts per 15 minutes over all addresses (a
   botnet guessing one account from many addresses). Past the ceiling the
   account is *slowed, not locked*: an address from which the owner logged in
   successfully in the last 30 days (a "known address") is not affected at
   all, and every other address shares a trickle of 1 attempt per 30 seconds.
   This is the OWASP "Account Lockout" advice (an attacker must not be able to
   lock the owner out; prefer throttling) with the trusted-client idea of the
   OWASP "Slow Down Online Guessing Attacks with Device Cookies" guidance,
   using the address of an earlier successful login instead of a cookie. The
   "known" mark is itself a window of the same storage ("1 per 30 days",
   cleared and hit again on each success, so it lasts 30 days from the *last*
   success; a spent window means known), so it is cluster-wide too.

So an attacker who hammers a name from other addresses never blocks the
owner's known address, and the owner's address has its own budget 1. Unknown
usernames are throttled exactly like known ones (no enumeration).

``UpdateProfile`` with a new password checks the current one against
**session**: 5 checks per 15 minutes per session token, cleared by a correct
one (a stolen token must not become an unlimited password oracle). The budget
is the session's, not the account's: a thief's wrong guesses on a stolen token
spend only that token's budget, so the owner's own session can still change the
password with the correct one, which revokes every other session (the thief's).
A thief cannot open more sessions without the password, so there is no
account-wide budget that the thief could spend to lock the owner out.

``Register``: **client address**: ``--register-limit`` (default 10 per hour).

Client addresses (:func:`client_address`): the host of the gRPC peer without
the port; an IPv6 address is reduced to its /64 network (one host usually
controls a whole /64, so counting single IPv6 addresses would be free to dodge);
an IPv4-mapped IPv6 address counts as the IPv4 address; Unix sockets share one
address ``unix``. Behind a reverse proxy every client has the proxy's address:
raise ``--login-address-limit`` and ``--register-limit`` there (forwarded-for
headers are not trusted).

Counting attempts that the directory (LDAP) could not answer: they count too,
because a bind that timed out may still have been evaluated by the directory,
and moving windows cannot take an entry back.
"""

from __future__ import annotations

import ipaddress
import time
import urllib.parse
from dataclasses import dataclass

import limits
import redis.asyncio
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from . import redis_pool
from .errors import (
    CurrentPasswordThrottled,
    LoginThrottled,
    RegistrationThrottled,
    ThrottleUnavailable,
)

UNKNOWN_ADDRESS = "unknown"


def client_address(peer: str) -> str:
    """The throttling key of a gRPC peer string (``grpc.aio.ServicerContext.peer()``).

    The peer is a gRPC URI (gRPC naming doc); grpcio (1.85) percent-encodes the
    brackets of an IPv6 host (RFC 3986 §2.1), so it is decoded first:
    ``"ipv4:203.0.113.9:5555"`` → ``"203.0.113.9"``;
    ``"ipv6:%5B2001:db8:1:2:3:4:5:6%5D:5555"`` → ``"2001:db8:1:2::/64"`` (the /64 network);
    ``"ipv6:%5B::ffff:10.0.0.1%5D:5555"`` → ``"10.0.0.1"``; a zone (``%25eth0``) is dropped;
    ``"unix:/run/h.sock"`` → ``"unix"``;
    anything else (empty, unparsable) → ``"unknown"`` (one shared bucket).
    """
    kind, _, rest = urllib.parse.unquote(peer).partition(":")
    if kind in ("unix", "unix-abstract"):
        return "unix"
    if kind == "ipv4":
        host = rest.rpartition(":")[0]
    elif kind == "ipv6":
        host = rest.rpartition(":")[0].removeprefix("[").removesuffix("]")
    else:
        return UNKNOWN_ADDRESS
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return UNKNOWN_ADDRESS
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """The limits, in the notation of :func:`limits.parse` (``"5 per 15 minutes"``).

    Attributes:
        login_per_user_address: attempts per (username, client address); cleared on success.
        login_per_address: attempts per client address over all usernames (spraying).
        login_per_user: ceiling per username over all addresses; past it, unknown
            addresses share ``login_past_ceiling`` and known ones are not limited by it.
        login_past_ceiling: the shared trickle for unknown addresses past the ceiling.
        known_address_for: how long the last successful login keeps its address "known"
            (only the window's length matters: the mark is one entry, renewed on success).
        password_check_per_session: ``UpdateProfile`` current-password checks per session.
        register_per_address: ``Register`` calls per client address.
    """

    login_per_user_address: str = "5 per 15 minutes"
    login_per_address: str = "100 per 15 minutes"
    login_per_user: str = "20 per 15 minutes"
    login_past_ceiling: str = "1 per 30 seconds"
    known_address_for: str = "1 per 30 days"
    password_check_per_session: str = "5 per 15 minutes"
    register_per_address: str = "10 per hour"

    def validate(self) -> None:
        """Parse every limit.

        Raises:
            ValueError: a limit is not in the ``limits`` notation.
        """
        for name in self.__dataclass_fields__:
            limits.parse(getattr(self, name))


class Throttle:
    """Reserves password guesses and registrations under a :class:`ThrottlePolicy`.

    Args:
        policy: the limits (the defaults of :class:`ThrottlePolicy` if None).
        redis_url: ``redis://[:PASS@]HOST:PORT/DB`` to keep the windows in Redis,
            shared by every node; empty for this process's memory.

    Every method may raise :class:`~hubbub.server.errors.ThrottleUnavailable`
    when the storage (Redis) cannot be reached: the attempt is refused, never
    let through unthrottled.
    """

    def __init__(self, policy: ThrottlePolicy | None = None, *, redis_url: str = "") -> None:
        self.policy = policy or ThrottlePolicy()
        self._pool: redis.asyncio.ConnectionPool | None = None
        self.storage: Storage
        if redis_url:
            # Callers wait for a pooled connection instead of failing on a burst.
            self._pool = redis_pool.blocking_pool(redis_url)
            self.storage = RedisStorage(
                "async+" + redis_url,
                wrap_exceptions=True,
                implementation="redispy",
                key_prefix="hubbub-throttle",
                connection_pool=self._pool,  # type: ignore[arg-type]  # documented option; stubs too narrow
            )
        else:
            self.storage = MemoryStorage(wrap_exceptions=True)
        self._limiter = MovingWindowRateLimiter(self.storage)
        p = self.policy
        self._user_address = limits.parse(p.login_per_user_address)
        self._address = limits.parse(p.login_per_address)
        self._user = limits.parse(p.login_per_user)
        self._past_ceiling = limits.parse(p.login_past_ceiling)
        self._known = limits.parse(p.known_address_for)
        self._password_check = limits.parse(p.password_check_per_session)
        self._register = limits.parse(p.register_per_address)

    async def close(self) -> None:
        """Disconnect from Redis (nothing to do for memory)."""
        if self._pool is not None:
            await self._pool.aclose()

    async def _hit(self, item: limits.RateLimitItem, *key: str) -> float | None:
        """Reserve one entry; None if reserved, else seconds until one frees."""
        try:
            if await self._limiter.hit(item, *key):
                return None
            stats = await self._limiter.get_window_stats(item, *key)
        except StorageError as exc:
            raise ThrottleUnavailable() from exc
        return max(0.0, stats.reset_time - time.time())

    async def login_attempt(self, username: str, address: str) -> None:
        """Reserve one login attempt for canonical ``username`` from ``address``.

        Call before checking the password; the attempt counts whatever its outcome.

        Raises:
            LoginThrottled: a budget is spent; ``retry_after_s`` says when one entry frees.
            ThrottleUnavailable: the storage cannot be reached.
        """
        wait = await self._hit(self._user_address, "login-user-address", username, address)
        if wait is None:
            wait = await self._hit(self._address, "login-address", address)
        if wait is None:
            past_ceiling = await self._hit(self._user, "login-user", username) is not None
            if past_ceiling and not await self._is_known(username, address):
                wait = await self._hit(self._past_ceiling, "login-past-ceiling", username)
        if wait is not None:
            raise LoginThrottled(wait)

    async def login_succeeded(self, username: str, address: str) -> None:
        """After a correct password: clear the (username, address) budget, remember the address.

        The "known" mark is cleared and hit again, so it lasts ``known_address_for``
        from this (the latest) success: a hit on a full moving window would be
        refused and the mark would expire that long after the *first* success.

        Raises:
            ThrottleUnavailable: the storage cannot be reached.
        """
        try:
            await self._limiter.clear(self._user_address, "login-user-address", username, address)
            await self._limiter.clear(self._known, "login-known", username, address)
            await self._limiter.hit(self._known, "login-known", username, address)
        except StorageError as exc:
            raise ThrottleUnavailable() from exc

    async def _is_known(self, username: str, address: str) -> bool:
        try:
            return not await self._limiter.test(self._known, "login-known", username, address)
        except StorageError as exc:
            raise ThrottleUnavailable() from exc

    async def password_check(self, session: str) -> None:
        """Reserve one current-password check for ``session`` (the hex of the token's hash).

        Keyed by session, not account: a stolen token's guesses cannot spend the
        budget of the owner's own session (OWASP Authentication Cheat Sheet,
        "Account Lockout": an attacker must not be able to lock the owner out).

        Raises:
            CurrentPasswordThrottled: the budget is spent.
            ThrottleUnavailable: the storage cannot be reached.
        """
        wait = await self._hit(self._password_check, "password-check", session)
        if wait is not None:
            raise CurrentPasswordThrottled(wait)

    async def password_check_succeeded(self, session: str) -> None:
        """After a correct current password: clear ``session``'s budget.

        Raises:
            ThrottleUnavailable: the storage cannot be reached.
        """
        try:
            await self._limiter.clear(self._password_check, "password-check", session)
        except StorageError as exc:
            raise ThrottleUnavailable() from exc

    async def registration(self, address: str) -> None:
        """Reserve one registration from ``address``.

        Raises:
            RegistrationThrottled: the address's budget is spent.
            ThrottleUnavailable: the storage cannot be reached.
        """
        wait = await self._hit(self._register, "register", address)
        if wait is not None:
            raise RegistrationThrottled(wait)
