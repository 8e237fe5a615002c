"""One live Chat stream: its outbox, in-order inbox delivery (fill) and acks.

The hub (:mod:`hubbub.server.hub`) opens and closes sessions and routes events to
them; a :class:`ChatSession` does one stream's I/O: the bounded
:class:`~hubbub.server.outbox.Outbox` the hub only *offers* to (a full outbox
disconnects the client with ``SLOW_CONSUMER``), the fill task that replays the
inbox from the store, and the ack writes. What was queued, what exists and what
was acked is the sans-I/O :class:`~hubbub.server.sequencing.StreamSequence`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

from .errors import (
    HistoryChanged,
    HubbubError,
    MalformedEvent,
    ResumeBeyondEnd,
    SessionExpired,
    ShuttingDown,
    SlowConsumer,
)
from .events import InResume, OutEvent, OutGoingAway, OutMessage, OutPresence, OutSynced, OutWelcome
from .models import Account, AuthSession, StoredMessage
from .outbox import Outbox, OutboxClosed
from .sequencing import Delivery, StreamSequence

if TYPE_CHECKING:
    from .hub import Hub
    from .presence_feed import PresenceFeed

log = logging.getLogger(__name__)

FILL_BATCH = 256
CONTROL_EVENT_SIZE = 128  # bytes counted for non-message events
RESUME_TOKEN_BYTES = 24
PRESENCE_CHUNK = 64  # most presence changes moved into an empty outbox at once


def resume_holder(resume_token: str) -> str:
    """The presence holder id of a stream: SHA-256 (hex) of its resume token, so the
    token itself is never stored or published."""
    return hashlib.sha256(resume_token.encode()).hexdigest()


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
        # Set by the transport: stops the stream's writer at once (even mid-write) when
        # the hub drops the stream; called once, from fail().
        self.abort_hook: Callable[[], None] | None = None
        self.requests = 0  # client events read so far
        self.position = StreamSequence()  # inbox sequences queued, known, acked
        self.synced = False  # first replay done (Synced queued)
        self.sends: set[asyncio.Task[None]] = set()  # sends awaiting their commit
        self._fill_task: asyncio.Task[None] | None = None
        self._presence: PresenceFeed | None = None  # the feed followed after Welcome
        self._presence_after = 0  # its generation read up to
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
        hook, self.abort_hook = self.abort_hook, None
        if hook is not None:
            hook()

    def expire(self) -> None:
        """The session token expired: end the stream (``SESSION_EXPIRED``)."""
        self.fail(SessionExpired("The session expired; log in again."))

    def go_away(self, reason: str, message: str, reconnect_delay_ms: int) -> None:
        """Tell the client to reconnect, then close after the queue drains."""
        if not self.outbox.closed:
            self.outbox.offer(OutGoingAway(reason, message, reconnect_delay_ms), 0)
            self.close_error = ShuttingDown(message)
            self.outbox.close(drain=True)

    def welcome(self, event: OutWelcome, feed: PresenceFeed | None) -> None:
        """Queue ``event`` (the first of the stream), then follow ``feed`` from its
        current generation: the presence changes after those ``event.online`` shows,
        of users other than this one, coalesced (the latest state of each user), taken
        when the outbox is empty and never counted against its bounds. ``feed`` None:
        no presence events."""
        self.offer(event)
        if feed is not None:
            self._presence = feed
            self._presence_after = feed.generation
            self.outbox.source = self._next_presence

    def _next_presence(self) -> list[OutPresence]:
        """The next presence changes for the writer (at most a quarter of the outbox)."""
        feed = self._presence
        if feed is None or self._presence_after >= feed.visible:
            return []
        limit = max(1, min(PRESENCE_CHUNK, self.outbox.max_events // 4))
        events, self._presence_after = feed.read(self._presence_after, limit, self.username)
        return events

    def presence_published(self) -> None:
        """The feed published changes: queue the first of them now if the writer is idle."""
        feed = self._presence
        if feed is not None and self._presence_after < feed.visible:
            self.outbox.refill()

    # -- inbox delivery ------------------------------------------------------------

    def start_delivery(self, after_sequence: int, last_sequence: int) -> None:
        """Replay stored messages after ``after_sequence``, then go live."""
        self.position.start(after_sequence, last_sequence)
        self._kick_fill()

    def on_message(self, message: StoredMessage) -> None:
        """A message was stored for this user: enqueue it in sequence order."""
        action = self.position.stored(message.sequence, filling=self._fill_task is not None)
        if action is Delivery.QUEUE:
            self.offer(OutMessage(message), message.size)
        elif action is Delivery.FILL:
            self._kick_fill()

    def _kick_fill(self) -> None:
        if self._fill_task is None and not self.outbox.closed:
            self._fill_task = asyncio.create_task(self._fill(), name=f"fill-{self.username}")

    async def _fill(self) -> None:
        """Copy inbox messages (position.enqueued, position.target] from the store, in order.

        Inboxes have no gaps; if one has (a damaged or hand-edited database), the
        missing sequences are logged and skipped, and delivery goes on: a gap never
        makes delivery stop or spin.
        """
        try:
            position = self.position
            while position.behind:
                batch = await self.hub.store.messages_after(
                    self.account, position.enqueued, FILL_BATCH
                )
                if not batch:
                    missing = position.give_up_missing()
                    log.warning(
                        "inbox of %s: sequences %d..%d are missing from the store; skipped",
                        self.username,
                        missing.start,
                        missing.stop - 1,
                    )
                    break
                for message in batch:
                    if message.sequence != position.enqueued + 1:
                        log.warning(
                            "inbox of %s has a gap: sequences %d..%d are missing; skipped",
                            self.username,
                            position.enqueued + 1,
                            message.sequence - 1,
                        )
                    await self.outbox.put(OutMessage(message), message.size)
                    position.queued(message.sequence)
            if not self.synced:
                await self.outbox.put(OutSynced(position.enqueued), CONTROL_EVENT_SIZE)
                self.synced = True
        except OutboxClosed:
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("inbox replay failed for %s", self.username)
            self.fail(ShuttingDown("Internal error while replaying the inbox; reconnect."))
        finally:
            self._fill_task = None
        if self.position.behind and not self.outbox.closed:
            self._kick_fill()  # messages arrived while the last batch was being queued

    async def wait_delivered(self) -> None:
        """Wait until every message known at call time is queued for the writer."""
        target = self.position.target
        while (
            self._fill_task is not None or self.position.enqueued < target
        ) and not self.outbox.closed:
            if self._fill_task is None:
                self._kick_fill()
            task = self._fill_task
            if task is None:
                break
            await asyncio.shield(task)

    # -- the client's position -------------------------------------------------------

    async def resume(self, event: InResume | None) -> None:
        """Start delivery after the client's position (see the Resume message in the proto).

        Raises (delivery has started from the acknowledged sequence):
            HistoryChanged: ``event.history_id`` is set and is not this store's.
            ResumeBeyondEnd: ``event.after_sequence`` is after the last stored sequence.
        """
        if self.position.delivering:
            raise MalformedEvent.for_field("resume", "the stream has already resumed")
        cursor = await self.hub.store.cursor(self.account)
        acked, last = cursor.acked_sequence, cursor.last_sequence
        after = None if event is None else event.after_sequence
        if event is not None and event.history_id and event.history_id != self.hub.history_id:
            self.start_delivery(acked, last)
            raise HistoryChanged(
                "Your position belongs to another history (the server's data was restored "
                f"or imported): replaying after your last acknowledged message ({acked}); "
                "forget what you marked as shown after it."
            )
        if after is not None and after > last:
            self.start_delivery(acked, last)
            raise ResumeBeyondEnd(
                f"resume.after_sequence {after} is after the last stored sequence ({last}): "
                f"replaying after your last acknowledged message ({acked}); forget what you "
                "marked as shown after it."
            )
        self.start_delivery(acked if after is None else after, last)

    # -- acks ------------------------------------------------------------------------

    def ack(self, sequence: int) -> None:
        """Record the client's cumulative ack of ``sequence``; stored in the background,
        coalesced.

        Raises:
            InvalidArgument: ``sequence`` was not sent on this stream yet.
        """
        if self.position.ack(sequence) and self._ack_task is None:
            self._ack_task = asyncio.create_task(self._persist_acks(), name=f"ack-{self.username}")

    async def _persist_acks(self) -> None:
        try:
            while (target := self.position.ack_to_store()) is not None:
                await self.hub.store_ack(self.account, target)
                self.position.ack_written(target)
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
        target = self.position.ack_to_store()
        if target is not None:
            await self.hub.store_ack(self.account, target)
            self.position.ack_written(target)

    def cancel_tasks(self) -> None:
        """Stop the replay task and the expiry timer (the ack task is left to finish)."""
        if self._fill_task is not None:
            self._fill_task.cancel()
        if self.expiry is not None:
            self.expiry.cancel()
