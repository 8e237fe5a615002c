"""Revocation and takeover of live streams.

Logout and a password change publish a ``REVOKED`` session event; every node
rechecks the session of its stream of that user against the store and ends it
(``SESSION_REVOKED``) if it is gone. A stream taken over by a newer one (its
resume token shown) ends at once (``SESSION_TAKEN_OVER``), on this node directly,
elsewhere through a broker session event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from .errors import SessionRevoked, SessionTakenOver, SessionUncheckable
from .models import Account, AuthSession, SessionEvent, SessionEventKind, utc_now

if TYPE_CHECKING:
    from .hub import Hub
    from .session import ChatSession

log = logging.getLogger(__name__)

RECHECK_ATTEMPTS = 6  # tries to recheck a session in the store (backoff up to 2 s)


class Revocations:
    """Revocation and takeover handling of one hub (:attr:`Hub.revocations`).

    Args:
        hub: the hub whose live sessions, store, broker and background tasks are used.
    """

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def account_changed(self, account: Account) -> None:
        """Refresh the cached account (e.g. a new display name) and its live session.

        A new password hash means the store revoked the user's other sessions: the
        revocation is published (:meth:`revoke`) so their streams end on every node.
        """
        if self.refresh_account(account):
            self.hub.spawn(self.revoke(account.username), f"revoke-{account.username}")

    def refresh_account(self, account: Account) -> bool:
        """Cache ``account`` and set it on its live session; True if its password hash
        changed (the store then revoked the user's other sessions)."""
        previous = self.hub.users.cache.get(account.username)
        self.hub.users.cache[account.username] = account
        session = self.hub.sessions.get(account.username)
        if session is not None:
            session.account = account
        return previous is None or previous.password_hash != account.password_hash

    async def logout(self, username: str, delete_session: Coroutine[Any, Any, None]) -> None:
        """Run ``delete_session`` (the store write of a logout of ``username``) and publish
        the revocation (:meth:`revoke`) as one task a cancellation cannot split: once the
        session is gone from the store, its streams end on every node.

        Raises:
            whatever the store write raises (the revocation is then not published).
        """

        async def work() -> None:
            await delete_session
            await self.revoke(username)

        await self.hub.committed(work(), f"logout-{username}")

    async def update_account(self, update: Coroutine[Any, Any, Account]) -> Account:
        """Run ``update`` (the store write of a profile change, returning the new account)
        and apply it (:meth:`account_changed`: a new password revokes the user's other
        sessions on every node) as one task a cancellation cannot split; the new account.

        Raises:
            whatever ``update`` raises (nothing is applied then).
        """

        async def work() -> Account:
            account = await update
            if self.refresh_account(account):
                await self.revoke(account.username)
            return account

        return await self.hub.committed(work(), "update-account")

    async def revoke(self, username: str) -> None:
        """Sessions of ``username`` were revoked in the store (logout, password change):
        tell every node to recheck its stream of that user (ended if its session is gone)."""
        await self.hub.broker.publish_session_event(
            SessionEvent(SessionEventKind.REVOKED, username)
        )

    def on_session_event(self, event: SessionEvent) -> None:
        """Broker callback: apply a revocation or takeover to this node's stream of the user.

        ``TAKEN_OVER`` ends the stream whose holder id matches at once (ABORTED).
        ``REVOKED`` rechecks the stream's session in the store and ends it
        (UNAUTHENTICATED) if it is gone.
        """
        session = self.hub.sessions.get(event.username)
        if session is None:
            return
        if event.kind is SessionEventKind.TAKEN_OVER:
            self.on_claim_lost(event.username, event.holder)
        elif session.auth is not None:
            self.hub.spawn(self.recheck(session, session.auth), f"recheck-{event.username}")

    def on_claim_lost(self, username: str, holder: str) -> None:
        """Presence/broker callback: the claim of ``username`` held by ``holder`` belongs to
        another stream now; this node's stream with that holder id ends at once (ABORTED
        SESSION_TAKEN_OVER)."""
        session = self.hub.sessions.get(username)
        if session is not None and session.holder == holder:
            del self.hub.sessions[username]  # the new stream registers under the name
            session.fail(SessionTakenOver("This session was taken over by a newer connection."))

    def on_resubscribed(self) -> None:
        """Broker callback: the subscription was re-established; revocations published
        while it was down were missed, so every local stream's session is rechecked."""
        for session in list(self.hub.sessions.values()):
            if session.auth is not None:
                self.hub.spawn(self.recheck(session, session.auth), f"recheck-{session.username}")

    async def recheck(self, session: ChatSession, auth: AuthSession) -> None:
        """End ``session`` (SESSION_REVOKED) if its session is gone from the store.

        A store error is retried RECHECK_ATTEMPTS times with backoff; if the store still
        cannot answer, the stream ends with a retryable error rather than outliving a
        possible revocation (OWASP Session Management: fail closed).
        """
        for attempt in range(RECHECK_ATTEMPTS):
            try:
                alive = await self.hub.store.get_session(auth.token_hash, utc_now()) is not None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "could not recheck the session of %s (%s); retrying", session.username, exc
                )
                await asyncio.sleep(min(2.0, 0.1 * 2**attempt))
                continue
            if not alive:
                session.fail(
                    SessionRevoked(
                        "This session was logged out or revoked (password changed); log in again."
                    )
                )
            return
        log.error("could not recheck the session of %s; ending its stream", session.username)
        session.fail(SessionUncheckable("The server could not recheck this session; reconnect."))
