"""Accounts and sessions: registration, login, token checks, logout.

Tokens are 256-bit values from :mod:`secrets` (a CSPRNG), given to the client
once and stored only as their SHA-256 (OWASP Session Management Cheat Sheet).
Password guesses and registrations are reserved against moving-window limits
before any argon2 work (:mod:`hubbub.server.throttle`, after the OWASP
Authentication Cheat Sheet, "Protect against automated attacks" and "Account
Lockout").
"""

from __future__ import annotations

import hashlib
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from . import passwords, usernames
from .directory import Directory
from .errors import (
    AuthenticationFailed,
    InvalidArgument,
    RegistrationClosed,
    TokenInvalid,
    UsernameTaken,
)
from .models import Account, AuthSession, utc_now
from .passwords import PasswordHashing
from .store import Store
from .throttle import Throttle, client_address

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
        throttle: guess and registration limits (in-memory defaults if None).
        registration_open: False refuses Register (``--registration closed``);
            an operator adds accounts with :meth:`create_account`
            (``hubbub-server user add``).
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
        throttle: Throttle | None = None,
        directory: Directory | None = None,
        directory_only: bool = False,
        registration_open: bool = True,
    ) -> None:
        if directory_only and directory is None:
            raise ValueError("directory_only needs a directory")
        self.store = store
        self.hashing = hashing
        self.session_ttl = session_ttl
        self.throttle = throttle or Throttle()
        self.directory = directory
        self.directory_only = directory_only
        self.registration_open = registration_open

    async def register(
        self, username: str, password: str, display_name: str = "", *, peer: str = ""
    ) -> Account:
        """Create an account for a client (the ``Register`` RPC).

        Args:
            peer: the client's gRPC peer (``context.peer()``), for the per-address
                limit (:func:`~hubbub.server.throttle.client_address`).

        Raises:
            RegistrationClosed: ``--registration closed`` or ``directory_only``.
            InvalidUsername, ReservedUsername, InvalidPassword, InvalidArgument: bad fields.
            RegistrationThrottled: too many registrations from the client's address
                (counted once the fields are valid, before any lookup or hashing).
            UsernameTaken: the canonical name exists.
        """
        if self.directory_only:
            raise RegistrationClosed(
                "Registration is closed: accounts come from the directory; log in instead."
            )
        if not self.registration_open:
            raise RegistrationClosed(
                "Registration is closed on this server; ask its operator for an account."
            )
        checked = self._check_new_account(username, password, display_name)
        await self.throttle.registration(client_address(peer))
        return await self._create(*checked, password)

    async def create_account(self, username: str, password: str, display_name: str = "") -> Account:
        """Create an account as the operator (``hubbub-server user add``): no limits apply.

        The same rules as :meth:`register` (names, reserved names, password
        policy, display name), even when registration is closed.

        Raises:
            InvalidUsername, ReservedUsername, InvalidPassword, InvalidArgument: bad fields.
            UsernameTaken: the canonical name exists.
        """
        return await self._create(
            *self._check_new_account(username, password, display_name), password
        )

    def _check_new_account(
        self, username: str, password: str, display_name: str
    ) -> tuple[str, str]:
        """(canonical name, shown name) of a valid new account; raises on bad fields."""
        name = usernames.canonical_for_registration(username)
        passwords.check_policy(password)
        return name, check_display_name(display_name) or username.strip()

    async def _create(self, name: str, shown: str, password: str) -> Account:
        if await self.store.get_account(name) is not None:
            raise UsernameTaken(f"The username '{name}' is already taken.")
        encoded = await self.hashing.hash(password)
        return await self.store.create_account(name, shown, encoded)

    async def login(self, username: str, password: str, *, peer: str = "") -> LoginResult:
        """Check the password and open a session.

        The attempt is reserved against the login limits before the password is
        checked (:meth:`~hubbub.server.throttle.Throttle.login_attempt`), so parallel
        guesses cannot outrun the budget.

        Args:
            peer: the client's gRPC peer (``context.peer()``); empty = unknown address.

        Raises:
            InvalidUsername: the name breaks the naming rules (no account can have it).
            LoginThrottled: too many recent attempts for this name from this address,
                from this address, or (past the ceiling, from an unknown address) for
                this name; ``retry_after_s`` says when to retry.
            ThrottleUnavailable: the limits storage (Redis) cannot be reached.
            AuthenticationFailed: unknown user or wrong password (same answer, same work);
                with a directory also an unknown DN, a refused bind, a reserved
                name or a bot, and, with ``directory_only``, a local-only account.
            DirectoryUnavailable: the directory is unreachable (the attempt still
                counts: the directory may have evaluated a bind that timed out).
        """
        name = usernames.canonical(username)
        address = client_address(peer)
        await self.throttle.login_attempt(name, address)
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
            raise AuthenticationFailed("Wrong username or password.")
        await self.throttle.login_succeeded(name, address)
        token = secrets.token_urlsafe(TOKEN_BYTES)
        expires_at = utc_now() + self.session_ttl
        await self.store.create_session(token_hash(token), account.id, expires_at)
        return LoginResult(token, expires_at, account)

    async def authenticate(self, token: str | None) -> AuthSession:
        """The session of a valid token: its hash, account and expiry.

        Checked on every call; a live Chat stream is also ended when its session is
        revoked or expires (see :mod:`hubbub.server.revocation`), OWASP Session Management
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
        Each current-password check is reserved against the budget of this
        session (the token's hash) before it is verified
        (:meth:`~hubbub.server.throttle.Throttle.password_check`), so a stolen token
        is not an unlimited password oracle, and its guesses cannot lock the owner's
        own session out of changing the password (which then revokes the thief's).

        Raises:
            InvalidArgument, InvalidPassword: bad fields.
            CurrentPasswordThrottled: too many current-password checks in this session.
            AuthenticationFailed: wrong current password.
        """
        shown = check_display_name(display_name) if display_name is not None else None
        encoded = None
        if new_password:
            passwords.check_policy(new_password)
            session = token_hash(token).hex()
            await self.throttle.password_check(session)
            if not await self.hashing.verify(account.password_hash, current_password):
                raise AuthenticationFailed("The current password is wrong.")
            await self.throttle.password_check_succeeded(session)
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
