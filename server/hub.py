"""The chat hub: live sessions, ordered gap-free delivery, presence and bots.

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
* Logout and a password change publish a ``REVOKED`` session event; every node
  rechecks the session of its stream of that user against the store and ends it
  (``SESSION_REVOKED``) if it is gone. A timer per stream ends it when the token
  expires (``SESSION_EXPIRED``).
* Closing a session (:meth:`Hub.close_session`) runs in its own task, shielded,
  so presence claim, session and outbox are released whatever cancellation hits.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections.abc import Awaitable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from . import paging, usernames
from .broker import Broker
from .errors import (
    AlreadyConnected,
    ClientIdReused,
    HistoryChanged,
    HubbubError,
    InvalidArgument,
    InvalidMessage,
    MalformedEvent,
    NobodyOnline,
    ResumeBeyondEnd,
    ServerFull,
    SessionExpired,
    SessionRevoked,
    SessionTakenOver,
    SessionUncheckable,
    ShuttingDown,
    SlowConsumer,
    UsernameTaken,
    UserNotFound,
)
from .events import (
    InAck,
    InEvent,
    InMalformed,
    InPing,
    InResume,
    InSend,
    OutError,
    OutEvent,
    OutGoingAway,
    OutMessage,
    OutPong,
    OutPresence,
    OutSendResult,
    OutSynced,
    OutWelcome,
)
from .metrics import Metrics
from .models import (
    Account,
    Appended,
    AuthSession,
    EntryKind,
    PresenceChange,
    SendReceipt,
    SessionEvent,
    SessionEventKind,
    StoredMessage,
    UsersPage,
    UserView,
    utc_now,
)
from .outbox import Outbox, OutboxClosed
from .passwords import UNUSABLE_HASH
from .presence import PresenceRegistry
from .store import Store

log = logging.getLogger(__name__)

T = TypeVar("T")

ECHOBOT = "echobot"
CLIENT_ID_MAX = 128
FILL_BATCH = 256
CONTROL_EVENT_SIZE = 128  # bytes counted for non-message events
MAX_SENDS_IN_FLIGHT = 256  # per stream, awaiting their commit
BOTS_IDLE_WAIT_S = 2.0  # longest wait for the bots' answers when a stream half-closes
RESUME_TOKEN_BYTES = 24
RECHECK_ATTEMPTS = 6  # tries to recheck a session in the store (backoff up to 2 s)
RELEASE_ATTEMPTS = 20  # tries to release a presence claim (backoff up to 5 s) when closing


def resume_holder(resume_token: str) -> str:
    """The presence holder id of a stream: SHA-256 (hex) of its resume token, so the
    token itself is never stored or published."""
    return hashlib.sha256(resume_token.encode()).hexdigest()


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


class ChatSession:
    """One live Chat stream of one user.

    The transport feeds client events to :meth:`Hub.handle` and writes what
    :attr:`outbox` yields. ``close_error`` says why the hub closed the stream
    (None for a normal end). ``auth`` is the session the stream was opened with
    (None for in-process callers without a token); ``resume_token`` is this
    stream's secret (sent in Welcome) and ``holder`` its presence holder id.
    """

    def __init__(
        self, hub: Hub, account: Account, outbox: Outbox, auth: AuthSession | None = None
    ) -> None:
        self.hub = hub
        self.account = account
        self.outbox = outbox
        self.auth = auth
        self.resume_token = secrets.token_urlsafe(RESUME_TOKEN_BYTES)
        self.holder = resume_holder(self.resume_token)
        self.expiry: asyncio.TimerHandle | None = None  # ends the stream when the token expires
        self.close_task: asyncio.Task[None] | None = None
        self.close_error: HubbubError | None = None
        self.aborted = asyncio.Event()  # set when the hub drops the stream at once
        self.requests = 0  # client events read so far
        self.delivering = False
        self.enqueued_seq = 0  # last inbox sequence queued for the writer
        self.target_seq = 0  # highest inbox sequence known to exist
        self.synced = asyncio.Event()  # first replay done
        self.sends: set[asyncio.Task[None]] = set()  # sends awaiting their commit
        self._fill_task: asyncio.Task[None] | None = None
        self._welcomed = False
        self._early_presence: list[PresenceChange] = []
        self._acked = 0
        self._ack_persisted = 0
        self._ack_task: asyncio.Task[None] | None = None

    @property
    def username(self) -> str:
        """Canonical username of the session's user."""
        return self.account.username

    # -- outbound ---------------------------------------------------------------

    def offer(self, event: OutEvent, size: int = CONTROL_EVENT_SIZE) -> None:
        """Queue an event without waiting; a full outbox disconnects the client."""
        if self.outbox.closed:
            return
        if not self.outbox.offer(event, size):
            self.fail(
                SlowConsumer(
                    "Disconnected: this client did not read its messages fast enough "
                    "(outbound queue full). Stored messages will be delivered on reconnect."
                )
            )

    def fail(self, error: HubbubError) -> None:
        """Close the stream at once with ``error``; queued events are dropped (not lost: stored)."""
        if self.close_error is None:
            self.close_error = error
            log.info("closing stream of %s: %s", self.username, error.reason)
        self.outbox.close(drain=False)
        self.aborted.set()

    def go_away(self, reason: str, message: str, reconnect_delay_ms: int) -> None:
        """Tell the client to reconnect, then close after the queue drains."""
        if not self.outbox.closed:
            self.outbox.offer(OutGoingAway(reason, message, reconnect_delay_ms), 0)
            self.close_error = ShuttingDown(message)
            self.outbox.close(drain=True)

    def _welcome(self, event: OutWelcome) -> None:
        self.offer(event)
        self._welcomed = True
        for change in self._early_presence:
            self.on_presence(change)
        self._early_presence.clear()

    def on_presence(self, change: PresenceChange) -> None:
        """Forward another user's presence change."""
        if change.user.username == self.username:
            return
        if not self._welcomed:
            self._early_presence.append(change)
            return
        self.offer(OutPresence(change))

    # -- inbox delivery ------------------------------------------------------------

    def start_delivery(self, after_sequence: int, last_sequence: int) -> None:
        """Replay stored messages after ``after_sequence``, then go live."""
        self.delivering = True
        self.enqueued_seq = after_sequence
        self.target_seq = max(self.target_seq, last_sequence)
        self._kick_fill()

    def on_message(self, message: StoredMessage) -> None:
        """A message was stored for this user: enqueue it in sequence order."""
        if message.sequence > self.target_seq:
            self.target_seq = message.sequence
        if not self.delivering or message.sequence <= self.enqueued_seq:
            return
        if message.sequence == self.enqueued_seq + 1 and self._fill_task is None:
            self.enqueued_seq = message.sequence
            self.offer(OutMessage(message), message.size)
            return
        self._kick_fill()

    def _kick_fill(self) -> None:
        if self._fill_task is None and not self.outbox.closed:
            self._fill_task = asyncio.create_task(self._fill(), name=f"fill-{self.username}")

    async def _fill(self) -> None:
        """Copy inbox messages (enqueued_seq, target_seq] from the store, in order.

        Inboxes have no gaps; if one has (a damaged or hand-edited database), the
        missing sequences are logged and skipped, and delivery goes on: a gap never
        makes delivery stop or spin.
        """
        try:
            while self.enqueued_seq < self.target_seq:
                batch = await self.hub.store.messages_after(
                    self.account, self.enqueued_seq, FILL_BATCH
                )
                if not batch:
                    log.warning(
                        "inbox of %s: sequences %d..%d are missing from the store; skipped",
                        self.username,
                        self.enqueued_seq + 1,
                        self.target_seq,
                    )
                    self.target_seq = self.enqueued_seq
                    break
                for message in batch:
                    if message.sequence != self.enqueued_seq + 1:
                        log.warning(
                            "inbox of %s has a gap: sequences %d..%d are missing; skipped",
                            self.username,
                            self.enqueued_seq + 1,
                            message.sequence - 1,
                        )
                    await self.outbox.put(OutMessage(message), message.size)
                    self.enqueued_seq = message.sequence
            if not self.synced.is_set():
                await self.outbox.put(OutSynced(self.enqueued_seq), CONTROL_EVENT_SIZE)
                self.synced.set()
        except OutboxClosed:
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("inbox replay failed for %s", self.username)
            self.fail(ShuttingDown("Internal error while replaying the inbox; reconnect."))
        finally:
            self._fill_task = None
        if self.enqueued_seq < self.target_seq and not self.outbox.closed:
            self._kick_fill()  # messages arrived while the last batch was being queued

    async def wait_delivered(self) -> None:
        """Wait until every message known at call time is queued for the writer."""
        target = self.target_seq
        while (
            self._fill_task is not None or self.enqueued_seq < target
        ) and not self.outbox.closed:
            if self._fill_task is None:
                self._kick_fill()
            task = self._fill_task
            if task is None:
                break
            await asyncio.shield(task)

    # -- acks ------------------------------------------------------------------------

    def ack(self, sequence: int) -> None:
        """Record a cumulative ack; persisted in the background, coalesced."""
        if sequence <= self._acked:
            return
        self._acked = sequence
        if self._ack_task is None:
            self._ack_task = asyncio.create_task(self._persist_acks(), name=f"ack-{self.username}")

    async def _persist_acks(self) -> None:
        try:
            while self._ack_persisted < self._acked:
                target = self._acked
                await self.hub.store_ack(self.account, target)
                self._ack_persisted = target
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("could not persist ack for %s", self.username)
        finally:
            self._ack_task = None

    async def flush_acks(self) -> None:
        """Wait until every recorded ack is stored."""
        while self._ack_task is not None:
            await asyncio.shield(self._ack_task)
        if self._ack_persisted < self._acked:
            await self.hub.store_ack(self.account, self._acked)
            self._ack_persisted = self._acked

    def cancel_tasks(self) -> None:
        """Stop the replay task and the expiry timer (the ack task is left to finish)."""
        if self._fill_task is not None:
            self._fill_task.cancel()
        if self.expiry is not None:
            self.expiry.cancel()


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
        self._accounts: dict[str, Account] = {}
        self._bots: dict[str, Account] = {}
        self._bot_queue: asyncio.Queue[StoredMessage] = asyncio.Queue()
        self._bot_task: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._send_tasks: set[asyncio.Task[None]] = set()
        self._background: set[asyncio.Task[Any]] = set()  # closes, session rechecks
        self._opening = 0
        self.shutting_down = False
        self.history_id = ""  # the store's history id, read at start

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Create the built-in users, subscribe to the broker, start the bots."""
        echobot = await self.store.get_account(ECHOBOT)
        if echobot is None:
            try:
                echobot = await self.store.create_account(
                    ECHOBOT, "Echo Bot", UNUSABLE_HASH, bot=True
                )
            except UsernameTaken:  # another node starting at the same time created it
                echobot = await self.store.get_account(ECHOBOT)
                assert echobot is not None
        self._bots[ECHOBOT] = echobot
        self._accounts[ECHOBOT] = echobot
        self.history_id = await self.store.history_id()
        self.presence.on_claim_lost(self.on_claim_lost)
        await self.broker.start(self)
        self._bot_task = asyncio.create_task(self._run_bots(), name="bots")
        interval = self.presence.sweep_interval_s
        if interval is not None:
            self._sweeper = asyncio.create_task(self._sweep_presence(interval), name="sweeper")
        # Catch up with messages stored for the bot while no server was running.
        cursor = await self.store.cursor(echobot)
        after = cursor.acked_sequence
        while after < cursor.last_sequence:
            batch = await self.store.messages_after(echobot, after, FILL_BATCH)
            if not batch:
                break
            for message in batch:
                self._bot_queue.put_nowait(message)
            after = batch[-1].sequence

    async def _sweep_presence(self, interval_s: float) -> None:
        """Announce users whose node died (their presence claim expired) as offline."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                for username, at in await self.presence.sweep():
                    account = await self.account(username)
                    shown = account.display_name if account else username
                    view = UserView(username, shown, False, at, False)
                    await self.broker.publish_presence(PresenceChange(view, at))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("presence sweep failed; retrying in %.1f s", interval_s)

    async def shutdown(self, reconnect_delay_ms: int = 1000) -> None:
        """Tell every stream to go away (graceful shutdown); stop the bots."""
        self.shutting_down = True
        if self._send_tasks:  # answer sends already queued before saying goodbye
            await asyncio.wait(set(self._send_tasks), timeout=2.0)
        for session in list(self.sessions.values()):
            session.go_away(
                "SERVER_SHUTDOWN", "The server is restarting; reconnect.", reconnect_delay_ms
            )
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._bot_task is not None:
            await self._wait_bots_idle()
            self._bot_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._bot_task
        await self.broker.close()

    async def wait_closed(self, timeout_s: float = 5.0) -> None:
        """Wait (at most ``timeout_s`` seconds) for the session closes and rechecks still
        running, so their last store and presence writes land before those close."""
        pending = {t for t in self._background if not t.done()}
        if pending:
            await asyncio.wait(pending, timeout=timeout_s)

    # -- accounts ----------------------------------------------------------------------

    async def account(self, username: str) -> Account | None:
        """The account with canonical ``username`` (cached), or None."""
        account = self._accounts.get(username)
        if account is None:
            account = await self.store.get_account(username)
            if account is not None:
                self._accounts[username] = account
        return account

    def account_changed(self, account: Account) -> None:
        """Refresh the cached account (e.g. a new display name) and its live session.

        A new password hash means the store revoked the user's other sessions: the
        revocation is published (:meth:`revoke`) so their streams end on every node.
        """
        if self._refresh_account(account):
            self._spawn(self.revoke(account.username), f"revoke-{account.username}")

    def _refresh_account(self, account: Account) -> bool:
        """Cache ``account`` and set it on its live session; True if its password hash
        changed (the store then revoked the user's other sessions)."""
        previous = self._accounts.get(account.username)
        self._accounts[account.username] = account
        session = self.sessions.get(account.username)
        if session is not None:
            session.account = account
        return previous is None or previous.password_hash != account.password_hash

    def _spawn(self, work: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        """Run ``work`` in a task the hub keeps a reference to until it ends."""
        task = asyncio.create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _committed(self, work: Coroutine[Any, Any, T], name: str) -> T:
        """Run ``work`` (a store write and what must follow it) to the end in its own task,
        even if the caller is cancelled meanwhile (client deadline, disconnect); its result.

        Raises:
            whatever ``work`` raises, to a caller that is still waiting; if the caller
            was cancelled, the failure is logged.
        """
        task = self._spawn(work, name)
        task.add_done_callback(_log_failure)
        return await asyncio.shield(task)

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

        await self._committed(work(), f"logout-{username}")

    async def update_account(self, update: Coroutine[Any, Any, Account]) -> Account:
        """Run ``update`` (the store write of a profile change, returning the new account)
        and apply it (:meth:`account_changed`: a new password revokes the user's other
        sessions on every node) as one task a cancellation cannot split; the new account.

        Raises:
            whatever ``update`` raises (nothing is applied then).
        """

        async def work() -> Account:
            account = await update
            if self._refresh_account(account):
                await self.revoke(account.username)
            return account

        return await self._committed(work(), "update-account")

    async def revoke(self, username: str) -> None:
        """Sessions of ``username`` were revoked in the store (logout, password change):
        recheck this node's stream of that user at once (ended if its session is gone),
        without waiting for the broker, and tell every other node to do the same (a
        broker that cannot take the event now publishes it once it can)."""
        event = SessionEvent(SessionEventKind.REVOKED, username)
        self.on_session_event(event)
        await self.broker.publish_session_event(event)

    async def list_users(
        self, online_only: bool, page_size: int = 0, page_token: str = ""
    ) -> UsersPage:
        """One page of users sorted by username, with presence; bots are always online.

        AIP-158 paging (:mod:`hubbub.server.paging`): ``page_size`` 0 means 100,
        more than 1000 is capped; the token continues after the last username of
        the previous page and is only valid with the same ``online_only``.

        Raises:
            InvalidArgument: a negative ``page_size`` or a bad ``page_token``.
        """
        size = paging.page_size(
            page_size, default=paging.USERS_DEFAULT_PAGE_SIZE, maximum=paging.USERS_MAX_PAGE_SIZE
        )
        key = f"online_only={online_only}"
        after = paging.decode_token("users", page_token, key)
        online = await self.presence.online()
        changed = await self.presence.last_change()
        if online_only:  # few: page over the online names instead of every account
            names = sorted(n for n in set(online) | set(self._bots) if n > after)
            accounts = await self._accounts_named(names[:size])
            more = len(names) > size
        else:
            accounts = await self.store.list_accounts(after=after, limit=size + 1)
            more = len(accounts) > size
        views = [self._view(a, online, changed) for a in accounts[:size]]
        more = more and bool(views)
        return UsersPage(
            views, paging.encode_token("users", views[-1].username, key) if more else ""
        )

    @staticmethod
    def _view(
        account: Account, online: Mapping[str, datetime], changed: Mapping[str, datetime]
    ) -> UserView:
        return UserView(
            username=account.username,
            display_name=account.display_name,
            online=account.bot or account.username in online,
            presence_changed_at=changed.get(account.username),
            bot=account.bot,
        )

    # -- streams -----------------------------------------------------------------------

    async def open_session(
        self, account: Account, auth: AuthSession | None = None, resume_token: str = ""
    ) -> ChatSession:
        """Register a live stream for ``account`` and queue its Welcome.

        Args:
            account: the user.
            auth: the session the stream is opened with; the stream ends when it is
                revoked or expires (None: no session, for in-process callers).
            resume_token: the resume token of the user's current stream, if the client
                has one: that stream (on any node, or a dead one) is taken over at once.

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
                session.expiry = loop.call_at(
                    loop.time() + max(0.0, delay),
                    session.fail,
                    SessionExpired("The session expired; log in again."),
                )
            online = await self.presence.online()
            changed = await self.presence.last_change()
            cursor = await self.store.cursor(account)
            online_views = [
                self._view(a, online, changed)
                for a in await self._accounts_named(set(online) | set(self._bots))
            ]
            me = self._view(account, online, changed)
            session._welcome(
                OutWelcome(
                    me,
                    online_views,
                    cursor,
                    history_id=self.history_id,
                    resume_token=session.resume_token,
                    session_expires_at=auth.expires_at if auth is not None else None,
                )
            )
            session.target_seq = cursor.last_sequence
            await self.broker.publish_presence(PresenceChange(me, now))
        except BaseException:
            await self.close_session(session)
            raise
        return session

    async def _shielded(self, work: Awaitable[Any]) -> None:
        """Run ``work`` to the end even if the caller is cancelled meanwhile."""
        task = self._spawn(_discard(work), "shielded")
        await asyncio.shield(task)

    async def _accounts_named(self, names: Iterable[str]) -> list[Account]:
        found = [await self.account(n) for n in sorted(names)]
        return [a for a in found if a is not None]

    async def close_session(self, session: ChatSession) -> None:
        """Forget a stream: stop its tasks, store its acks, release its presence claim and
        announce it offline (unless a newer stream took the claim over).

        Runs once per session, in its own task: a cancellation of the caller (even a
        second one) does not interrupt it, so nothing is left claimed or held.
        """
        if session.close_task is None:
            session.close_task = self._spawn(self._close(session), f"close-{session.username}")
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
            await self.broker.publish_presence(PresenceChange(view, now))

    async def handle(self, session: ChatSession, event: InEvent) -> None:
        """Process one client event; refusals become an :class:`OutError`, never an exception.

        Events of a stream the hub has closed (revoked, taken over, too slow) are
        ignored: nothing is accepted after that point.
        """
        if session.outbox.closed:
            return
        session.requests += 1
        index = session.requests
        if not session.delivering and not isinstance(event, InResume):
            await self._resume(session, None)  # any first event starts delivery
        try:
            match event:
                case InSend():
                    await self._send(session, event, index)
                case InAck():
                    self._ack(session, event.sequence)
                case InResume():
                    await self._resume(session, event)
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
        if not session.delivering:
            await self._resume(session, None)
        if session.sends:  # wait (never cancel) the sends' commits
            await asyncio.wait(set(session.sends))
        await self._wait_bots_idle()
        await session.wait_delivered()
        session.outbox.close(drain=True)

    async def _wait_bots_idle(self) -> None:
        """Wait until the bots answered what is queued, at most BOTS_IDLE_WAIT_S.

        ``asyncio.timeout`` rather than ``asyncio.wait_for``: on Python 3.11 the latter
        loses a cancellation that arrives as the queue empties (and a stream's cleanup
        then waited forever behind it).
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(BOTS_IDLE_WAIT_S):
                await self._bot_queue.join()

    async def _resume(self, session: ChatSession, event: InResume | None) -> None:
        """Start delivery after the client's position (see the Resume message in the proto).

        Raises (delivery has started from the acknowledged sequence):
            HistoryChanged: ``event.history_id`` is set and is not this store's.
            ResumeBeyondEnd: ``event.after_sequence`` is after the last stored sequence.
        """
        if session.delivering:
            raise MalformedEvent.for_field("resume", "the stream has already resumed")
        cursor = await self.store.cursor(session.account)
        acked, last = cursor.acked_sequence, cursor.last_sequence
        after = None if event is None else event.after_sequence
        if event is not None and event.history_id and event.history_id != self.history_id:
            session.start_delivery(acked, last)
            raise HistoryChanged(
                "Your position belongs to another history (the server's data was restored "
                f"or imported): replaying after your last acknowledged message ({acked}); "
                "forget what you marked as shown after it."
            )
        if after is not None and after > last:
            session.start_delivery(acked, last)
            raise ResumeBeyondEnd(
                f"resume.after_sequence {after} is after the last stored sequence ({last}): "
                f"replaying after your last acknowledged message ({acked}); forget what you "
                "marked as shown after it."
            )
        session.start_delivery(acked if after is None else after, last)

    def _ack(self, session: ChatSession, sequence: int) -> None:
        if sequence > session.enqueued_seq:
            raise InvalidArgument.for_field(
                "ack.sequence",
                f"{sequence} was not sent on this stream (last sent: {session.enqueued_seq})",
            )
        session.ack(sequence)

    async def _send(self, session: ChatSession, event: InSend, index: int) -> None:
        """Queue the send in stream order; a task awaits its commit and answers.

        The reader does not wait for the durable commit, so one stream's sends
        share group commits; at most ``MAX_SENDS_IN_FLIGHT`` wait per stream.
        """
        completion = await self.begin_send(session.account, event)
        task = asyncio.create_task(self._answer_send(session, index, event.client_id, completion))
        self._send_tasks.add(task)
        session.sends.add(task)
        task.add_done_callback(self._send_tasks.discard)
        task.add_done_callback(session.sends.discard)
        if len(session.sends) >= MAX_SENDS_IN_FLIGHT:
            await asyncio.wait(set(session.sends), return_when=asyncio.FIRST_COMPLETED)

    async def _answer_send(
        self,
        session: ChatSession,
        index: int,
        client_id: str,
        completion: Coroutine[Any, Any, SendReceipt],
    ) -> None:
        try:
            receipt = await completion
        except HubbubError as error:
            session.offer(OutError(index, client_id, error))
        except Exception:
            log.exception("storing message %r of %s failed", client_id, session.username)
            failed = HubbubError("The message was not stored; resend it.", retry=True)
            session.offer(OutError(index, client_id, failed))
        else:
            session.offer(OutSendResult(receipt))

    async def begin_send(self, sender: Account, event: InSend) -> Coroutine[Any, Any, SendReceipt]:
        """Validate a send and queue its write; returns a coroutine giving the receipt.

        Writes are queued in call order, so a sender's messages are stored in
        the order it sent them. Awaiting the result waits for the durable
        commit, then publishes the inbox entries.

        Raises (before anything is queued):
            MalformedEvent: bad client id or no destination.
            InvalidMessage: empty body or over ``max_message_bytes``.
            UserNotFound / GroupNotFound: no such destination.
            NobodyOnline: a random recipient was asked for and nobody else is online.
        The returned coroutine raises NotGroupMember for a group the sender left, and
        ClientIdReused when ``event.client_id`` was already used for a different message.
        """
        self._check_send(event.client_id, event.body)
        now = utc_now()
        if event.group:
            name = usernames.group_reference(event.group)
            pending = self.store.store_group_message(sender, name, event.client_id, event.body, now)
            return self._finish_send(pending, event, name, None)
        if event.random_recipient:
            online = sorted(set(await self.presence.online()) - {sender.username} - set(self._bots))
            if not online:
                raise NobodyOnline("Nobody else is online.")
            target = secrets.choice(online)
        else:
            target = event.recipient
        recipient = await self._recipient(target)
        pending = self.store.store_message(sender, recipient, event.client_id, event.body, now)
        return self._finish_send(pending, event, recipient.username, recipient)

    async def _recipient(self, raw: str) -> Account:
        if not raw:
            raise MalformedEvent.for_field("send.recipient", "a recipient is required")
        recipient = await self.find_account(raw)
        if recipient is None:
            raise UserNotFound("The destination user does not exist")
        return recipient

    async def find_account(self, raw: str) -> Account | None:
        """The account a user typed ``raw`` means (any case or width), or None; a name
        that breaks the username rules cannot exist, so it is None too."""
        try:
            name = usernames.canonical(raw)
        except HubbubError:
            return None
        return await self.account(name)

    async def user_view(self, account: Account) -> UserView:
        """``account`` as others see it, online if it has a live stream on any node."""
        online = account.bot or await self.presence.is_online(account.username)
        return UserView(account.username, account.display_name, online, None, account.bot)

    async def send(self, sender: Account, event: InSend) -> SendReceipt:
        """Store one message durably, publish it, and return the receipt (unary SendMessage).

        Raises:
            every error of :meth:`begin_send` and of the coroutine it returns.
        """
        return await (await self.begin_send(sender, event))

    async def _finish_send(
        self,
        pending: Awaitable[Appended],
        event: InSend,
        target: str,
        recipient: Account | None,
    ) -> SendReceipt:
        appended = await pending
        client_id = event.client_id
        if appended.duplicate:
            target = self._check_resend(appended, event, target)
        self._count_send("direct" if recipient else "group", appended.duplicate)
        await self.publish(appended.entries)
        if recipient is not None:  # this node first, then the cluster (presence)
            online = (
                recipient.bot
                or recipient.username in self.sessions
                or await self.presence.is_online(recipient.username)
            )
            sequence = appended.entries[0].sequence if appended.entries else 0
        else:
            online = any(e.recipient in self.sessions for e in appended.entries)
            if not online and appended.entries:
                everyone = await self.presence.online()
                online = any(e.recipient in everyone for e in appended.entries)
            sequence = 0
        return SendReceipt(
            client_id=client_id,
            message_id=appended.message_id,
            sequence=sequence,
            sent_at=appended.sent_at,
            duplicate=appended.duplicate,
            recipient_online=online,
            recipient=target,
        )

    def _check_resend(self, appended: Appended, event: InSend, target: str) -> str:
        """The destination of the message first stored under ``event.client_id``, if
        ``event`` is a resend of it (same body and destination; a random recipient matches
        whoever was picked the first time).

        Raises:
            ClientIdReused: the id was used for a different message (the one rule for the
                stream's send and the unary SendMessage).
        """
        texts = [e for e in appended.entries if e.kind is EntryKind.TEXT]
        if not texts:  # a group without other members: nothing stored to compare with
            return target
        first = texts[0]
        if event.group:
            same = first.group == target
        elif event.random_recipient:
            same, target = not first.group, first.recipient
        else:
            same = not first.group and first.recipient == target
        if same and first.body == event.body:
            return target
        raise ClientIdReused(
            f"The client id '{event.client_id}' was already used for a different message; "
            "this one was not sent. Use a new client id for a new message."
        )

    def _check_send(self, client_id: str, body: str) -> None:
        if not 1 <= len(client_id) <= CLIENT_ID_MAX:
            raise MalformedEvent.for_field(
                "send.client_id", f"must be 1 to {CLIENT_ID_MAX} characters"
            )
        if client_id.startswith("~"):
            raise MalformedEvent.for_field("send.client_id", "ids starting with '~' are reserved")
        size = len(body.encode())
        if size == 0:
            raise InvalidMessage.for_field("send.body", "the message is empty")
        if size > self.limits.max_message_bytes:
            raise InvalidMessage.for_field(
                "send.body",
                f"the message is {size} bytes; the limit is {self.limits.max_message_bytes}",
            )

    async def publish(self, entries: Iterable[StoredMessage]) -> None:
        """Hand stored inbox entries to the broker for delivery.

        Entries for a bot go straight to this node's bot queue instead: the node
        that stored a message answers it, so with several nodes a bot works once
        per message, not once per node. Called for duplicates too: the first
        publish may have been lost in a crash; receivers drop sequences they
        already have (and a bot's answer is idempotent).
        """
        for entry in entries:
            if entry.recipient in self._bots:
                self._bot_queue.put_nowait(entry)
            else:
                await self.broker.publish_message(entry)

    async def store_ack(self, account: Account, sequence: int) -> None:
        """Store a cumulative ack and deliver the delivery receipts it creates."""
        await self.publish(await self.store.ack(account, sequence, utc_now()))

    def _count_send(self, kind: str, duplicate: bool) -> None:
        if duplicate:
            self.metrics.sends_duplicate.inc()
        else:
            self.metrics.messages_stored.labels(kind).inc()

    async def send_direct(
        self, sender: Account, recipient_name: str, client_id: str, body: str
    ) -> SendReceipt:
        """Store a direct message durably, publish it, and return the receipt.

        Raises:
            MalformedEvent, InvalidMessage, UserNotFound: see :meth:`begin_send`.
        """
        return await self.send(sender, InSend(client_id, recipient_name, body))

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
        """Broker callback: tell every local session about a presence change."""
        for session in list(self.sessions.values()):
            session.on_presence(change)

    def on_session_event(self, event: SessionEvent) -> None:
        """Broker callback: apply a revocation or takeover to this node's stream of the user.

        ``TAKEN_OVER`` ends the stream whose holder id matches at once (ABORTED).
        ``REVOKED`` rechecks the stream's session in the store and ends it
        (UNAUTHENTICATED) if it is gone.
        """
        session = self.sessions.get(event.username)
        if session is None:
            return
        if event.kind is SessionEventKind.TAKEN_OVER:
            self.on_claim_lost(event.username, event.holder)
        elif session.auth is not None:
            self._spawn(self._recheck(session, session.auth), f"recheck-{event.username}")

    def on_claim_lost(self, username: str, holder: str) -> None:
        """Presence/broker callback: the claim of ``username`` held by ``holder`` belongs to
        another stream now; this node's stream with that holder id ends at once (ABORTED
        SESSION_TAKEN_OVER)."""
        session = self.sessions.get(username)
        if session is not None and session.holder == holder:
            del self.sessions[username]  # the new stream registers under the name
            session.fail(SessionTakenOver("This session was taken over by a newer connection."))

    def on_resubscribed(self) -> None:
        """Broker callback: the subscription was re-established; revocations published
        while it was down were missed, so every local stream's session is rechecked."""
        for session in list(self.sessions.values()):
            if session.auth is not None:
                self._spawn(self._recheck(session, session.auth), f"recheck-{session.username}")

    async def _recheck(self, session: ChatSession, auth: AuthSession) -> None:
        """End ``session`` (SESSION_REVOKED) if its session is gone from the store.

        A store error is retried RECHECK_ATTEMPTS times with backoff; if the store still
        cannot answer, the stream ends with a retryable error rather than outliving a
        possible revocation (OWASP Session Management: fail closed).
        """
        for attempt in range(RECHECK_ATTEMPTS):
            try:
                alive = await self.store.get_session(auth.token_hash, utc_now()) is not None
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

    # -- bots --------------------------------------------------------------------------

    async def _run_bots(self) -> None:
        while True:
            message = await self._bot_queue.get()
            try:
                await self._bot_reply(message)
            except asyncio.CancelledError:
                raise
            except HubbubError as error:
                log.info("echobot could not answer %s: %s", message.sender, error.message)
            except Exception:
                log.exception("echobot failed on message %d", message.message_id)
            finally:
                self._bot_queue.task_done()

    async def _bot_reply(self, message: StoredMessage) -> None:
        bot = self._bots[message.recipient]
        direct_text = message.kind is EntryKind.TEXT and not message.group
        if direct_text and message.sender not in self._bots:
            await self.send_direct(bot, message.sender, f"echo-{message.message_id}", message.body)
        await self.store_ack(bot, message.sequence)


async def _discard(work: Awaitable[Any]) -> None:
    await work


def _log_failure(task: asyncio.Task[Any]) -> None:
    """Done callback: log the failure of a task whose caller may have stopped waiting."""
    if not task.cancelled() and task.exception() is not None:
        log.error("%s failed", task.get_name(), exc_info=task.exception())
