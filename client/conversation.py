"""`Conversation`: a chat that survives connection loss.

It wraps a `Client` and reconnects with backoff, fails over to the next server
address, takes over its own stale stream with the Welcome's resume token, resumes
within the right history and resends unconfirmed messages; it obeys the server's retry
flag, so a refusal that cannot succeed later is reported, never retried forever.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Final, Self

from .backoff import Backoff
from .chat import Chat, new_client_id
from .client import Client
from .errors import ErrorKind, HubbubError
from .events import (
    ChatEvent,
    ConnectionLost,
    DeliveryReceipt,
    EventRejected,
    GoingAway,
    GroupUpdate,
    IncomingMessage,
    Reconnected,
    SendConfirmed,
    Welcome,
)

#: Resume refusals after which a Conversation resyncs from the acknowledged sequence.
RESYNC_REASONS: Final = frozenset({"HISTORY_CHANGED", "RESUME_BEYOND_END"})

#: Reason of the ABORTED status that ends a stream taken over by a newer one.
SESSION_TAKEN_OVER: Final = "SESSION_TAKEN_OVER"

#: How many times in a row a reconnect that carried a resume token is retried after
#: ALREADY_EXISTS (with backoff) before the Conversation gives up.
MAX_TAKEOVER_REFUSALS: Final = 10


@dataclass
class _Pending:
    recipient: str
    body: str
    group: str = ""
    random_recipient: bool = False


@dataclass
class Conversation:
    """A chat that reconnects by itself and shows every message at least once, in order.

    Iterate it from ONE task. It yields the Chat events, filtered: inbox entries
    (messages, receipts, group updates) with a sequence at or below `last_shown` are
    dropped (call `ack(seq)` once one is shown or handled); SendConfirmed and
    EventRejected come only for sends still unconfirmed. When the stream drops it
    yields ConnectionLost once, reconnects with `backoff` to the client's next address
    (logging in again with `password` if the token is refused, sending the last
    Welcome's resume token so a stale stream of its own is taken over at once), resumes
    after `last_shown`, re-sends unconfirmed messages under their original client ids
    and yields Reconnected.

    Position and history: `last_shown` only means something within `history_id` (the
    Welcome's). If a new Welcome names another history, or its last sequence is below
    `last_shown` (the server was restored from a backup), or the server refuses the
    Resume with HISTORY_CHANGED / RESUME_BEYOND_END, the conversation forgets its
    position and every "already shown" mark above the acknowledged sequence and takes
    what follows as new: at worst a message is shown twice, never skipped.

    Retries: the server's retry flag decides (google.rpc.ErrorInfo metadata["retry"]),
    and RetryInfo / GoingAway delays are waited. Without a flag, UNAVAILABLE and other
    transient failures and RESOURCE_EXHAUSTED are retried; UNAUTHENTICATED (when no
    password can log in again), ABORTED (SESSION_TAKEN_OVER: a newer stream of this
    client took over), PERMISSION_DENIED, INVALID_ARGUMENT, and ALREADY_EXISTS without a
    resume token (another login of the same user is online) end the iteration with that
    HubbubError; ALREADY_EXISTS despite a resume token is retried at most
    MAX_TAKEOVER_REFUSALS times in a row.
    """

    client: Client
    password: str | None = None
    backoff: Backoff = field(default_factory=Backoff)
    last_shown: int = 0
    pending: dict[str, _Pending] = field(default_factory=dict)
    chat: Chat | None = None
    welcome: Welcome | None = None
    #: The Welcome.history_id that `last_shown` belongs to ("" if unknown).
    history_id: str = ""
    #: The resume token of the last Welcome, sent when reconnecting ("" if none).
    resume_token: str = ""
    _closing: bool = False
    _announced: bool = False
    _away_delay: float = 0.0
    _up_since: float = 0.0
    #: A stream must stay up this long (seconds) before the backoff starts over, so a
    #: server that accepts and then drops every stream is not hammered.
    stable_after: float = 5.0

    async def start(self, after_sequence: int | None = None, history_id: str = "") -> Welcome:
        """Open the first stream and resume (after `after_sequence`, default the server cursor).

        `history_id` is the history `after_sequence` belongs to, if the caller kept one.
        Raises HubbubError on refusal (ALREADY_EXISTS, RESOURCE_EXHAUSTED,
        UNAUTHENTICATED, UNAVAILABLE).
        """
        chat = await self.client.open_chat()
        self.history_id = history_id
        self._adopt(chat, after_sequence)
        assert chat.welcome is not None
        return chat.welcome

    def _adopt(self, chat: Chat, after_sequence: int | None) -> None:
        """Make `chat` the live stream and send its Resume (resyncing if the position is
        not valid in the new Welcome's history)."""
        welcome = chat.welcome
        assert welcome is not None
        self.chat, self.welcome = chat, welcome
        self._up_since = time.monotonic()
        self.resume_token = welcome.resume_token
        if after_sequence is not None and self._position_is_stale(welcome, after_sequence):
            after_sequence = None
        if after_sequence is None:
            self.last_shown = welcome.acked_sequence
            chat.resume()
        else:
            self.last_shown = after_sequence
            if self.history_id:
                chat.resume(after_sequence, history_id=self.history_id)
            else:
                chat.resume(after_sequence)
            if after_sequence > welcome.acked_sequence:
                chat.ack(after_sequence)
        self.history_id = welcome.history_id

    def _position_is_stale(self, welcome: Welcome, position: int) -> bool:
        """True if `position` cannot belong to the history `welcome` describes."""
        if self.history_id and welcome.history_id and welcome.history_id != self.history_id:
            return True
        return welcome.last_sequence < position

    def _resync(self) -> None:
        """Forget the position: the server replays from its acknowledged sequence."""
        if self.welcome is not None:
            self.last_shown = self.welcome.acked_sequence
            self.history_id = self.welcome.history_id

    @property
    def connected(self) -> bool:
        """True while a stream is open."""
        return self.chat is not None

    def send(
        self, recipient: str, body: str, *, group: str = "", random_recipient: bool = False
    ) -> str:
        """Send to `recipient`, `group` or (`random_recipient`) an online user the server
        picks, now or after the next reconnect; returns the client id, which
        SendConfirmed / EventRejected will carry."""
        cid = new_client_id()
        self.pending[cid] = _Pending(recipient, body, group, random_recipient)
        if self.chat is not None:
            self.chat.send(recipient, body, cid, group=group, random_recipient=random_recipient)
        return cid

    def send_random(self, body: str) -> str:
        """Send `body` to one other online user the server picks (SendConfirmed.recipient
        names them; EventRejected with reason NOBODY_ONLINE if nobody else is online)."""
        return self.send("", body, random_recipient=True)

    def ack(self, sequence: int) -> None:
        """Record that the message `sequence` was shown and acknowledge it."""
        if sequence > self.last_shown:
            self.last_shown = sequence
        if self.chat is not None:
            self.chat.ack(sequence)

    async def close(self, grace: float = 2.0) -> None:
        """Half-close the stream and wait up to `grace` seconds for it to end."""
        self._closing = True
        if self.chat is not None:
            await self.chat.aclose(grace)

    def __aiter__(self) -> Self:
        return self

    def _lost(self, message: str) -> ChatEvent | None:
        self.chat = None
        if time.monotonic() - self._up_since >= self.stable_after:
            self.backoff.reset()
        if self._announced:
            return None
        self._announced = True
        return ConnectionLost(message)

    def _stream_end_is_final(self, exc: HubbubError) -> bool:
        """True if a live stream that ended with `exc` must not be reopened."""
        if exc.kind is ErrorKind.UNAUTHENTICATED:
            # With a password, one new login decides (a changed password then fails).
            return self.password is None
        if exc.kind in (
            ErrorKind.ABORTED,
            ErrorKind.PERMISSION_DENIED,
            ErrorKind.INVALID_ARGUMENT,
        ):
            return True
        return exc.retry is False

    async def __anext__(self) -> ChatEvent:
        while True:
            if self._closing and (self.chat is None or self.chat.ended):
                raise StopAsyncIteration
            if self.chat is None:
                welcome = await self._reconnect()
                self._announced = False
                return Reconnected(welcome)
            try:
                event = await self.chat.__anext__()
            except StopAsyncIteration:
                if self._closing:
                    raise
                lost = self._lost("The server closed the connection.")
            except HubbubError as exc:
                if self._closing:
                    raise StopAsyncIteration from None
                if self._stream_end_is_final(exc):
                    self.chat = None
                    self._closing = True
                    raise
                if exc.kind is ErrorKind.RESOURCE_EXHAUSTED:
                    self._away_delay = max(self._away_delay, 1.0)
                if exc.retry_delay is not None:
                    self._away_delay = max(self._away_delay, exc.retry_delay)
                lost = self._lost(exc.message)
            else:
                shown = self._filter(event)
                if shown is not None:
                    return shown
                continue
            if lost is not None:
                return lost

    def _filter(self, event: ChatEvent) -> ChatEvent | None:
        if isinstance(event, IncomingMessage | DeliveryReceipt | GroupUpdate):
            return event if event.sequence > self.last_shown else None
        if isinstance(event, SendConfirmed):
            return event if self.pending.pop(event.client_id, None) is not None else None
        if isinstance(event, EventRejected):
            if event.client_id:
                return event if self.pending.pop(event.client_id, None) is not None else None
            if event.reason in RESYNC_REASONS:
                self._resync()
                return None
            if any(f.startswith("ack") for f in event.fields()):
                return None  # an ack of a position from before a resync: nothing to show
            return event
        if isinstance(event, GoingAway):
            self._away_delay = event.reconnect_delay_ms / 1000
            if self.chat is not None:
                self.chat.close_writing()
            if self._announced:
                return None
            self._announced = True
            return ConnectionLost(event.message or "The server is going away.")
        return event

    def _may_retry_open(self, exc: HubbubError, takeover_refusals: int) -> bool:
        """Whether a refused reconnect is worth another attempt (see the class docstring)."""
        if exc.kind is ErrorKind.UNAUTHENTICATED:
            return False  # `_open` already logged in again if it could
        if exc.kind is ErrorKind.ALREADY_EXISTS:
            if exc.retry is not None:
                return exc.retry
            return bool(self.resume_token) and takeover_refusals < MAX_TAKEOVER_REFUSALS
        if exc.kind in (ErrorKind.ABORTED, ErrorKind.PERMISSION_DENIED, ErrorKind.INVALID_ARGUMENT):
            return False
        return exc.retryable

    async def _reconnect(self) -> Welcome:
        takeover_refusals = 0
        while True:
            delay = max(self.backoff.next_delay(), self._away_delay)
            self._away_delay = 0.0
            await asyncio.sleep(delay)
            await self.client.reset_channel()
            try:
                chat = await self._open()
            except HubbubError as exc:
                if not self._may_retry_open(exc, takeover_refusals):
                    self._closing = True
                    raise
                if exc.kind is ErrorKind.ALREADY_EXISTS:
                    takeover_refusals += 1
                if exc.retry_delay is not None:
                    self._away_delay = exc.retry_delay
                continue
            break
        self._adopt(chat, self.last_shown)
        for cid, item in self.pending.items():
            chat.send(
                item.recipient,
                item.body,
                cid,
                group=item.group,
                random_recipient=item.random_recipient,
            )
        assert chat.welcome is not None
        return chat.welcome

    async def _open_chat(self) -> Chat:
        if self.resume_token:
            return await self.client.open_chat(resume_token=self.resume_token)
        return await self.client.open_chat()

    async def _open(self) -> Chat:
        try:
            return await self._open_chat()
        except HubbubError as exc:
            if exc.kind is not ErrorKind.UNAUTHENTICATED or self.password is None:
                raise
            username = self.client.username
            if username is None:
                raise
        await self.client.login(username, self.password)
        return await self._open_chat()
