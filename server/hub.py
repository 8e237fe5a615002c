"""The chat hub: live sessions, ordered gap-free delivery, presence and bots.

The hub wires one node together and opens and closes streams; the concepts it
composes live beside it: :mod:`~hubbub.server.session` (one stream's state),
:mod:`~hubbub.server.sending` (the send pipeline), :mod:`~hubbub.server.users`
(account cache, user views), :mod:`~hubbub.server.revocation` (revocation and
takeover), :mod:`~hubbub.server.bots` (echobot).

Delivery path (the same whatever store/broker backend is used):

1. ``send``: validate → store durably (per-recipient sequence, idempotent per
   sender client id) → publish to the broker → answer the sender.
2. The broker hands the stored message to the node serving the recipient
   (:meth:`Hub.on_message`); the recipient's :class:`ChatSession` enqueues it
   if it is the next sequence, otherwise its *fill* task reads the missing
   range from the store, so every stream sees 1, 2, 3, … in order, no gaps.
3. The stream's writer drains the session's bounded :class:`Outbox`. The hub
   never waits for a consumer: a full outbox disconnects that client with
   ``SLOW_CONSUMER``; its messages stay stored for the next connect.

Session life cycle (one rule whatever the backend):

* A stream is opened with an authenticated session (token hash, expiry) and
  claims the user's presence under a fresh *resume token* (its SHA-256 is the
  claim's holder id). A new stream showing the current stream's resume token
  takes the claim over; the old stream ends with ``SESSION_TAKEN_OVER``, on this
  node directly, elsewhere through a broker session event.
* Logout and a password change revoke the user's streams on every node
  (:mod:`hubbub.server.revocation`). A timer per stream ends it when the token
  expires (``SESSION_EXPIRED``).
* Closing a session (:meth:`Hub.close_session`) runs in its own task, shielded,
  so presence claim, session and outbox are released whatever cancellation hits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from .bots import ECHOBOT, Bots
from .broker import Broker
from .errors import (
    AlreadyConnected,
    HubbubError,
    ServerFull,
    SessionRevoked,
    ShuttingDown,
)
from .events import (
    InAck,
    InEvent,
    InMalformed,
    InPing,
    InResume,
    InSend,
    OutError,
    OutPong,
    OutWelcome,
)
from .metrics import Metrics
from .models import (
    Account,
    AuthSession,
    PresenceChange,
    SendReceipt,
    SessionEvent,
    SessionEventKind,
    StoredMessage,
    UsersPage,
    UserView,
    utc_now,
)
from .outbox import Outbox
from .presence import PresenceRegistry
from .presence_feed import PresenceFanout
from .revocation import Revocations
from .sending import SendPipeline
from .session import ChatSession, resume_holder
from .store import Store
from .users import Users

log = logging.getLogger(__name__)

T = TypeVar("T")

RELEASE_ATTEMPTS = 20  # tries to release a presence claim (backoff up to 5 s) when closing


@dataclass(frozen=True, slots=True)
class HubLimits:
    """Tunable limits.

    Attributes:
        max_clients: most live streams on this node (0 = unlimited).
        max_message_bytes: largest message body, UTF-8 bytes.
        outbox_events: per-stream outbound queue bound, events.
        outbox_bytes: per-stream outbound queue bound, bytes.
    """

    max_clients: int = 0
    max_message_bytes: int = 65536
    outbox_events: int = 1024
    outbox_bytes: int = 8 * 1024 * 1024


class Hub:
    """Live sessions of one node and the delivery path between them.

    Args:
        store: durable state.
        broker: fan-out between nodes.
        presence: who is online, claimed atomically per user.
        limits: stream and message limits.
    """

    def __init__(
        self,
        store: Store,
        broker: Broker,
        presence: PresenceRegistry,
        limits: HubLimits | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.store = store
        self.broker = broker
        self.presence = presence
        self.limits = limits or HubLimits()
        self.sessions: dict[str, ChatSession] = {}
        self.fanout = PresenceFanout(self.sessions)  # presence to this node's streams
        self.users = Users(self)
        self.bots = Bots(self)
        self.sending = SendPipeline(self)
        self.revocations = Revocations(self)
        self._sweeper: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()  # closes, session rechecks
        self._opening = 0
        self.shutting_down = False
        self.history_id = ""  # the store's history id, read at start

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Create the built-in users, subscribe to the broker, start the bots."""
        echobot = await self.bots.create()
        self.users.cache[ECHOBOT] = echobot
        self.history_id = await self.store.history_id()
        self.presence.on_claim_lost(self.on_claim_lost)
        await self.broker.start(self)
        self.bots.start()
        self.fanout.feed.add_bots(
            [self.users.view(bot, {}, {}) for bot in self.bots.accounts.values()]
        )
        if self.presence.shared:
            await self.users.sync_presence(self.fanout)
        interval = self.presence.sweep_interval_s
        if interval is not None:
            self._sweeper = asyncio.create_task(self.users.sweep_presence(interval), name="sweeper")
        # Catch up with messages stored for the bot while no server was running.
        await self.bots.catch_up(echobot)

    async def shutdown(self, reconnect_delay_ms: int = 1000) -> None:
        """Tell every stream to go away (graceful shutdown); stop the bots."""
        self.shutting_down = True
        if self.sending.tasks:  # answer sends already queued before saying goodbye
            await asyncio.wait(set(self.sending.tasks), timeout=2.0)
        for session in list(self.sessions.values()):
            session.go_away(
                "SERVER_SHUTDOWN", "The server is restarting; reconnect.", reconnect_delay_ms
            )
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        self.fanout.close()
        await self.bots.stop()
        await self.broker.close()

    async def wait_closed(self, timeout_s: float = 5.0) -> None:
        """Wait (at most ``timeout_s`` seconds) for the session closes and rechecks still
        running, so their last store and presence writes land before those close."""
        pending = {t for t in self._background if not t.done()}
        if pending:
            await asyncio.wait(pending, timeout=timeout_s)

    # -- accounts and users (users.py), revocation (revocation.py) -----------------------

    async def find_account(self, raw: str) -> Account | None:
        """The account a user typed ``raw`` means (any case or width), or None; a name
        that breaks the username rules cannot exist, so it is None too."""
        return await self.users.find_account(raw)

    async def user_view(self, account: Account) -> UserView:
        """``account`` as others see it, online if it has a live stream on any node."""
        return await self.users.user_view(account)

    async def list_users(
        self, online_only: bool, page_size: int = 0, page_token: str = ""
    ) -> UsersPage:
        """One page of users with presence (:meth:`Users.list_users`).

        Raises:
            InvalidArgument: a negative ``page_size`` or a bad ``page_token``.
        """
        return await self.users.list_users(online_only, page_size, page_token)

    async def logout(self, username: str, delete_session: Coroutine[Any, Any, None]) -> None:
        """Run a logout's store write and publish the revocation, as one task a
        cancellation cannot split (:meth:`Revocations.logout`).

        Raises:
            whatever the store write raises (the revocation is then not published).
        """
        await self.revocations.logout(username, delete_session)

    async def update_account(self, update: Coroutine[Any, Any, Account]) -> Account:
        """Run a profile change's store write and apply it, as one task a cancellation
        cannot split (:meth:`Revocations.update_account`); the new account.

        Raises:
            whatever ``update`` raises (nothing is applied then).
        """
        return await self.revocations.update_account(update)

    def spawn(self, work: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        """Run ``work`` in a task the hub keeps a reference to until it ends."""
        task = asyncio.create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def committed(self, work: Coroutine[Any, Any, T], name: str) -> T:
        """Run ``work`` (a store write and what must follow it) to the end in its own task,
        even if the caller is cancelled meanwhile (client deadline, disconnect); its result.

        Raises:
            whatever ``work`` raises, to a caller that is still waiting; if the caller
            was cancelled, the failure is logged.
        """
        task = self.spawn(work, name)
        task.add_done_callback(_log_failure)
        return await asyncio.shield(task)

    # -- streams -----------------------------------------------------------------------

    async def open_session(
        self,
        account: Account,
        auth: AuthSession | None = None,
        resume_token: str = "",
        *,
        presence: bool = True,
    ) -> ChatSession:
        """Register a live stream for ``account`` and queue its Welcome.

        Args:
            account: the user.
            auth: the session the stream is opened with; the stream ends when it is
                revoked or expires (None: no session, for in-process callers).
            resume_token: the resume token of the user's current stream, if the client
                has one: that stream (on any node, or a dead one) is taken over at once.
            presence: False: the stream gets no presence events (the client does not
                track presence); its user's own presence is announced all the same.

        Raises:
            ShuttingDown: the server is stopping.
            ServerFull: ``max_clients`` live streams already.
            AlreadyConnected: the user has a live stream (and ``resume_token`` is not its).
            SessionRevoked: ``auth`` was revoked while the stream opened.
        """
        if self.shutting_down:
            raise ShuttingDown("The server is shutting down; reconnect later.")
        cap = self.limits.max_clients
        if cap and len(self.sessions) + self._opening >= cap:
            raise ServerFull("The server is full.")
        session = ChatSession(
            self,
            account,
            Outbox(self.limits.outbox_events, self.limits.outbox_bytes),
            auth,
        )
        name = account.username
        takeover = resume_holder(resume_token) if resume_token else ""
        now = utc_now()
        self._opening += 1
        try:
            try:
                claim = await self.presence.claim(name, now, session.holder, takeover)
            except BaseException:  # cancelled mid-claim: never leave a claim behind
                await self._shielded(self.presence.release(name, now, session.holder))
                raise
            if not claim.granted:
                raise AlreadyConnected(f"'{name}' is already logged in elsewhere.")
            if claim.replaced:
                self.on_session_event(
                    SessionEvent(SessionEventKind.TAKEN_OVER, name, claim.replaced)
                )
            self.sessions[name] = session
            self.metrics.streams_opened.inc()
            self.metrics.streams_active.set(len(self.sessions))
        finally:
            self._opening -= 1
        try:
            if claim.replaced and not claim.replaced_local:  # end it on its node
                await self.broker.publish_session_event(
                    SessionEvent(SessionEventKind.TAKEN_OVER, name, claim.replaced)
                )
            if auth is not None:
                # A revocation published between the interceptor's check and the
                # registration above did not reach this stream: check once more.
                if await self.store.get_session(auth.token_hash, utc_now()) is None:
                    raise SessionRevoked("The session was revoked; log in again.")
                loop = asyncio.get_running_loop()
                delay = (auth.expires_at - utc_now()).total_seconds()
                session.expiry = loop.call_at(loop.time() + max(0.0, delay), session.expire)
            cursor = await self.store.cursor(account)
            if self.presence.shared:  # another node's change may not have reached us yet
                await self.users.sync_presence(self.fanout)
            # This node's feed first (so the Welcome lists the user), then every node.
            me = UserView(name, account.display_name, True, now, account.bot)
            change = PresenceChange(me, now)
            self.fanout.apply(change)
            online = self.fanout.feed.online()
            expires_at = auth.expires_at if auth is not None else None
            welcome = OutWelcome(
                me, online, cursor, self.history_id, session.resume_token, expires_at
            )
            session.welcome(welcome, self.fanout.feed if presence else None)
            session.position.target = cursor.last_sequence
            await self.broker.publish_presence(change)
        except BaseException:
            await self.close_session(session)
            raise
        return session

    async def _shielded(self, work: Awaitable[Any]) -> None:
        """Run ``work`` to the end even if the caller is cancelled meanwhile."""
        task = self.spawn(_discard(work), "shielded")
        await asyncio.shield(task)

    async def close_session(self, session: ChatSession) -> None:
        """Forget a stream: stop its tasks, store its acks, release its presence claim and
        announce it offline (unless a newer stream took the claim over).

        Runs once per session, in its own task: a cancellation of the caller (even a
        second one) does not interrupt it, so nothing is left claimed or held.
        """
        if session.close_task is None:
            session.close_task = self.spawn(self._close(session), f"close-{session.username}")
        await asyncio.shield(session.close_task)

    async def _close(self, session: ChatSession) -> None:
        if self.sessions.get(session.username) is session:
            del self.sessions[session.username]
        self.metrics.streams_active.set(len(self.sessions))
        reason = session.close_error.reason if session.close_error else "normal"
        self.metrics.streams_closed.labels(reason).inc()
        session.cancel_tasks()
        session.outbox.close(drain=False)
        now = utc_now()
        try:
            await session.flush_acks()
        except Exception:
            log.exception("could not store the acks of %s", session.username)
        released = False
        for attempt in range(RELEASE_ATTEMPTS):  # a claim left held locks the user out
            try:
                released = await self.presence.release(session.username, now, session.holder)
                break
            except Exception as exc:  # e.g. Redis unreachable for a moment
                log.warning(
                    "could not release the presence of %s (%s); retrying", session.username, exc
                )
                await asyncio.sleep(min(5.0, 0.1 * 2**attempt))
        if released:
            view = UserView(
                session.username, session.account.display_name, False, now, session.account.bot
            )
            change = PresenceChange(view, now)
            self.fanout.apply(change)
            await self.broker.publish_presence(change)

    async def handle(self, session: ChatSession, event: InEvent) -> None:
        """Process one client event; refusals become an :class:`OutError`, never an exception.

        Events of a stream the hub has closed (revoked, taken over, too slow) are
        ignored: nothing is accepted after that point.
        """
        if session.outbox.closed:
            return
        session.requests += 1
        index = session.requests
        if not session.position.delivering and not isinstance(event, InResume):
            await session.resume(None)  # any first event starts delivery
        try:
            match event:
                case InSend():
                    await self.sending.on_stream(session, event, index)
                case InAck():
                    session.ack(event.sequence)
                case InResume():
                    await session.resume(event)
                case InPing():
                    session.offer(OutPong(event.nonce))
                case InMalformed():
                    raise event.error
        except HubbubError as error:
            client_id = event.client_id if isinstance(event, InSend) else ""
            session.offer(OutError(index, client_id, error))

    async def finish(self, session: ChatSession) -> None:
        """The client half-closed: deliver what is pending, then end the stream."""
        if session.outbox.closed:
            return
        if not session.position.delivering:
            await session.resume(None)
        if session.sends:  # wait (never cancel) the sends' commits
            await asyncio.wait(set(session.sends))
        await self.bots.wait_idle()
        await session.wait_delivered()
        session.outbox.close(drain=True)

    async def send(self, sender: Account, event: InSend) -> SendReceipt:
        """Store one message durably, publish it, and return the receipt (unary SendMessage).

        Raises:
            every error of :meth:`SendPipeline.begin_send` and of the coroutine it returns.
        """
        return await self.sending.send(sender, event)

    async def publish(self, entries: Iterable[StoredMessage]) -> None:
        """Hand stored inbox entries to the broker for delivery.

        Entries for a bot go straight to this node's bot queue instead: the node
        that stored a message answers it, so with several nodes a bot works once
        per message, not once per node. Called for duplicates too: the first
        publish may have been lost in a crash; receivers drop sequences they
        already have (and a bot's answer is idempotent). The other entries go to
        the broker together, in order (:meth:`Broker.publish_messages`: one Redis round
        trip).
        """
        others: list[StoredMessage] = []
        for entry in entries:
            if entry.recipient in self.bots.accounts:
                self.bots.queue.put_nowait(entry)
            else:
                others.append(entry)
        await self.broker.publish_messages(others)

    async def store_ack(self, account: Account, sequence: int) -> None:
        """Store a cumulative ack and deliver the delivery receipts it creates."""
        await self.publish(await self.store.ack(account, sequence, utc_now()))

    # -- broker handler -----------------------------------------------------------------

    def on_message(self, message: StoredMessage) -> None:
        """Broker callback: route a stored message to its local session.

        Bots are not reached this way: :meth:`publish` queues their entries on the
        storing node.
        """
        session = self.sessions.get(message.recipient)
        if session is not None:
            session.on_message(message)

    def on_presence(self, change: PresenceChange) -> None:
        """Broker callback: a user's presence changed; every local stream of another
        user gets it, coalesced (:class:`~hubbub.server.presence_feed.PresenceFanout`)."""
        self.fanout.apply(change)

    def on_session_event(self, event: SessionEvent) -> None:
        """Broker callback: apply a revocation or takeover to this node's stream of the
        user (:meth:`Revocations.on_session_event`)."""
        self.revocations.on_session_event(event)

    def on_claim_lost(self, username: str, holder: str) -> None:
        """Presence/broker callback: this node's stream of ``username`` with ``holder``
        ends at once (:meth:`Revocations.on_claim_lost`)."""
        self.revocations.on_claim_lost(username, holder)

    def on_resubscribed(self) -> None:
        """Broker callback: recheck every local stream's session
        (:meth:`Revocations.on_resubscribed`); presence changes published meanwhile were
        missed too, so the presence feed is brought in line with the registry."""
        self.revocations.on_resubscribed()
        if self.presence.shared:
            self.spawn(self.users.sync_presence(self.fanout), "presence-sync")


async def _discard(work: Awaitable[Any]) -> None:
    await work


def _log_failure(task: asyncio.Task[Any]) -> None:
    """Done callback: log the failure of a task whose caller may have stopped waiting."""
    if not task.cancelled() and task.exception() is not None:
        log.error("%s failed", task.get_name(), exc_info=task.exception())
