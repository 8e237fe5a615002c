"""Accounts and sessions: registration, login, token checks, logout.

Tokens are 256-bit values from :mod:`secrets` (a CSPRNG), given to the client
once and stored only as their SHA-256 (OWASP Session Management Cheat Sheet).
Failed logins are throttled per username with exponential lock-outs (OWASP
Authentication Cheat Sheet, "Protect against automated attacks").
"""

from __future__ import annotations

import hashlib
import secrets
import time
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from . import passwords, usernames
from .errors import (
    AuthenticationFailed,
    InvalidArgument,
    LoginThrottled,
    TokenInvalid,
    UsernameTaken,
)
from .models import Account, utc_now
from .passwords import PasswordHashing
from .store import Store

DISPLAY_NAME_MAX = 64
TOKEN_BYTES = 32


def token_hash(token: str) -> bytes:
    """SHA-256 of a session token (what the store keeps)."""
    return hashlib.sha256(token.encode()).digest()


def check_display_name(raw: str) -> str:
    """Trim and check a display name: at most 64 characters, no control characters.

    Raises:
        InvalidArgument: too long or has control/format characters.
    """
    name = unicodedata.normalize("NFC", raw.strip())
    if len(name) > DISPLAY_NAME_MAX:
        raise InvalidArgument.for_field(
            "display_name", f"must be at most {DISPLAY_NAME_MAX} characters"
        )
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in name):
        raise InvalidArgument.for_field("display_name", "must not contain control characters")
    return name


@dataclass
class LoginThrottle:
    """Per-key failure counter with exponential lock-out.

    After ``free_failures`` consecutive failures, each further failure locks the
    key for ``base_s * 2**(n - free_failures)`` seconds, at most ``max_s``.
    Times are :func:`time.monotonic` seconds.
    """

    free_failures: int = 5
    base_s: float = 1.0
    max_s: float = 900.0
    _failures: dict[str, tuple[int, float]] = field(default_factory=dict)

    def check(self, key: str, now: float) -> None:
        """Raises LoginThrottled while ``key`` is locked out."""
        _, locked_until = self._failures.get(key, (0, 0.0))
        if now < locked_until:
            raise LoginThrottled(locked_until - now)

    def failed(self, key: str, now: float) -> None:
        """Record one failure for ``key``."""
        count, _ = self._failures.get(key, (0, 0.0))
        count += 1
        lock = 0.0
        if count >= self.free_failures:
            lock = min(self.max_s, self.base_s * 2 ** (count - self.free_failures))
        self._failures[key] = (count, now + lock)
        if len(self._failures) > 100_000:  # bound memory under a spraying attack
            self._failures.pop(next(iter(self._failures)))

    def succeeded(self, key: str) -> None:
        """Forget failures for ``key``."""
        self._failures.pop(key, None)


@dataclass(frozen=True, slots=True)
class LoginResult:
    """A new session: the clear token (shown once), its expiry and the account."""

    token: str
    expires_at: datetime
    account: Account


class AuthService:
    """Accounts and sessions over a :class:`~hubbub.server.store.Store`.

    Args:
        store: durable state.
        hashing: argon2id hashing off the event loop.
        session_ttl: how long a token stays valid.
    """

    def __init__(
        self,
        store: Store,
        hashing: PasswordHashing,
        session_ttl: timedelta = timedelta(days=30),
        throttle: LoginThrottle | None = None,
    ) -> None:
        self.store = store
        self.hashing = hashing
        self.session_ttl = session_ttl
        self.throttle = throttle or LoginThrottle()

    async def register(self, username: str, password: str, display_name: str = "") -> Account:
        """Create an account.

        Raises:
            InvalidUsername, ReservedUsername, InvalidPassword, InvalidArgument: bad fields.
            UsernameTaken: the canonical name exists.
        """
        name = usernames.canonical_for_registration(username)
        passwords.check_policy(password)
        shown = check_display_name(display_name) or username.strip()
        if await self.store.get_account(name) is not None:
            raise UsernameTaken(f"The username '{name}' is already taken.")
        encoded = await self.hashing.hash(password)
        return await self.store.create_account(name, shown, encoded)

    async def login(self, username: str, password: str) -> LoginResult:
        """Check the password and open a session.

        Raises:
            InvalidUsername: the name breaks the naming rules (no account can have it).
            LoginThrottled: too many recent failures for this name.
            AuthenticationFailed: unknown user or wrong password (same answer, same work).
        """
        name = usernames.canonical(username)
        now = time.monotonic()
        self.throttle.check(name, now)
        account = await self.store.get_account(name)
        ok = await self.hashing.verify(account.password_hash if account else None, password)
        if not ok or account is None:
            self.throttle.failed(name, now)
            raise AuthenticationFailed("Wrong username or password.")
        self.throttle.succeeded(name)
        token = secrets.token_urlsafe(TOKEN_BYTES)
        expires_at = utc_now() + self.session_ttl
        await self.store.create_session(token_hash(token), account.id, expires_at)
        return LoginResult(token, expires_at, account)

    async def authenticate(self, token: str | None) -> Account:
        """The account of a valid session token.

        Raises:
            TokenInvalid: missing, unknown, expired or revoked.
        """
        if not token:
            raise TokenInvalid("Log in first: missing 'authorization: Bearer <token>' metadata.")
        account = await self.store.get_session(token_hash(token), utc_now())
        if account is None:
            raise TokenInvalid("The session token is invalid or expired; log in again.")
        return account

    async def logout(self, token: str) -> None:
        """Revoke the session of ``token``."""
        await self.store.delete_session(token_hash(token))
