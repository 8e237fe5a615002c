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
from .directory import Directory
from .errors import (
    AuthenticationFailed,
    InvalidArgument,
    LoginThrottled,
    RegistrationClosed,
    TokenInvalid,
    UsernameTaken,
)
from .models import Account, AuthSession, utc_now
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
        throttle: failed-login counter (a fresh one by default).
        directory: optional login directory (LDAP). A name with no local account,
            or whose account the directory created, is checked by the directory,
            and the account is created on the first success with the unusable
            local hash; accounts with a local password keep using it.
        directory_only: the directory decides every login (local passwords are ignored).
    """

    def __init__(
        self,
        store: Store,
        hashing: PasswordHashing,
        session_ttl: timedelta = timedelta(days=30),
        throttle: LoginThrottle | None = None,
        directory: Directory | None = None,
        directory_only: bool = False,
    ) -> None:
        if directory_only and directory is None:
            raise ValueError("directory_only needs a directory")
        self.store = store
        self.hashing = hashing
        self.session_ttl = session_ttl
        self.throttle = throttle or LoginThrottle()
        self.directory = directory
        self.directory_only = directory_only

    async def register(self, username: str, password: str, display_name: str = "") -> Account:
        """Create an account.

        Raises:
            InvalidUsername, ReservedUsername, InvalidPassword, InvalidArgument: bad fields.
            UsernameTaken: the canonical name exists.
            RegistrationClosed: ``directory_only`` is set (accounts come from LDAP).
        """
        if self.directory_only:
            raise RegistrationClosed(
                "Registration is closed: accounts come from the directory; log in instead."
            )
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
            AuthenticationFailed: unknown user or wrong password (same answer, same work);
                with a directory also an unknown DN, a refused bind, a reserved
                name or a bot, and, with ``directory_only``, a local-only account.
            DirectoryUnavailable: the directory is unreachable (not counted as a failure).
        """
        name = usernames.canonical(username)
        now = time.monotonic()
        self.throttle.check(name, now)
        account = await self.store.get_account(name)

        def from_directory(acc: Account | None) -> bool:
            # Accounts the directory created have no local password and are not bots.
            return acc is not None and acc.password_hash == passwords.UNUSABLE_HASH and not acc.bot

        if self.directory is not None and (
            self.directory_only or account is None or from_directory(account)
        ):
            user = None
            if name not in usernames.RESERVED and not (account and account.bot):
                user = await self.directory.authenticate(name, password)
            if user is None:
                account = None
            elif account is None:
                try:
                    account = await self.store.create_account(
                        name, user.display_name or name, passwords.UNUSABLE_HASH
                    )
                except UsernameTaken:  # a concurrent Register or first login won the race
                    account = await self.store.get_account(name)
                    if not (self.directory_only or from_directory(account)):
                        account = None
        elif not await self.hashing.verify(account.password_hash if account else None, password):
            account = None
        if account is None:
            self.throttle.failed(name, now)
            raise AuthenticationFailed("Wrong username or password.")
        self.throttle.succeeded(name)
        token = secrets.token_urlsafe(TOKEN_BYTES)
        expires_at = utc_now() + self.session_ttl
        await self.store.create_session(token_hash(token), account.id, expires_at)
        return LoginResult(token, expires_at, account)

    async def authenticate(self, token: str | None) -> AuthSession:
        """The session of a valid token: its hash, account and expiry.

        Checked on every call; a live Chat stream is also ended when its session is
        revoked or expires (see :mod:`hubbub.server.hub`), OWASP Session Management
        Cheat Sheet ("Session Expiration", "Renew the Session ID ...").

        Raises:
            TokenInvalid: missing, unknown, expired or revoked.
        """
        if not token:
            raise TokenInvalid("Log in first: missing 'authorization: Bearer <token>' metadata.")
        digest = token_hash(token)
        session = await self.store.get_session(digest, utc_now())
        if session is None:
            raise TokenInvalid("The session token is invalid or expired; log in again.")
        return AuthSession(digest, session.account, session.expires_at)

    async def update_profile(
        self,
        account: Account,
        token: str,
        *,
        display_name: str | None,
        new_password: str,
        current_password: str,
    ) -> Account:
        """Change the display name and/or the password of ``account``.

        A new password needs the current one and revokes every other session
        (OWASP Session Management: renew sessions after a credential change).

        Raises:
            InvalidArgument, InvalidPassword: bad fields.
            AuthenticationFailed: wrong current password.
        """
        shown = check_display_name(display_name) if display_name is not None else None
        encoded = None
        if new_password:
            passwords.check_policy(new_password)
            if not await self.hashing.verify(account.password_hash, current_password):
                raise AuthenticationFailed("The current password is wrong.")
            encoded = await self.hashing.hash(new_password)
        if shown is not None and not shown:
            shown = account.username
        return await self.store.update_account(
            account,
            display_name=shown,
            password_hash=encoded,
            keep_session=token_hash(token),
        )

    async def logout(self, token: str) -> None:
        """Revoke the session of ``token`` in the store (the caller then tells the hub,
        which ends the Chat stream opened with it on every node)."""
        await self.store.delete_session(token_hash(token))
