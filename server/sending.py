"""The send pipeline: validate a message, store it durably, publish it, answer the sender.

One path for the Chat stream (sends share group commits: the stream's reader does
not wait for the commit, at most ``MAX_SENDS_IN_FLIGHT`` per stream do) and the
unary SendMessage; echobot uses it too (:mod:`hubbub.server.bots`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Collection, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from . import usernames
from .errors import (
    ClientIdReused,
    HubbubError,
    InvalidMessage,
    MalformedEvent,
    NobodyOnline,
    UserNotFound,
)
from .events import InSend, OutError, OutSendResult
from .models import Account, Appended, EntryKind, SendReceipt, StoredMessage, utc_now

if TYPE_CHECKING:
    from .hub import Hub
    from .session import ChatSession

log = logging.getLogger(__name__)

CLIENT_ID_MAX = 128
MAX_SENDS_IN_FLIGHT = 256  # per stream, awaiting their commit


def check_send(client_id: str, body: str, max_message_bytes: int) -> None:
    """Check a send's client id and body (the one rule for the stream, the unary
    SendMessage and ``hubbub-server import``, :mod:`.export_validation`).

    Args:
        client_id: the sender's id of the message, 1 to CLIENT_ID_MAX characters, not
            starting with ``~`` (reserved for server entries).
        body: the text, 1 to ``max_message_bytes`` UTF-8 bytes.

    Raises:
        MalformedEvent: a bad client id.
        InvalidMessage: an empty or oversized body.
    """
    if not 1 <= len(client_id) <= CLIENT_ID_MAX:
        raise MalformedEvent.for_field("send.client_id", f"must be 1 to {CLIENT_ID_MAX} characters")
    if client_id.startswith("~"):
        raise MalformedEvent.for_field("send.client_id", "ids starting with '~' are reserved")
    size = len(body.encode())
    if size == 0:
        raise InvalidMessage.for_field("send.body", "the message is empty")
    if size > max_message_bytes:
        raise InvalidMessage.for_field(
            "send.body",
            f"{size} bytes; the limit is {max_message_bytes}",
        )


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a send's outcome as seen (its caller may have gone away)."""
    if not task.cancelled():
        task.exception()


class CommitPublisher:
    """Publishes the entries of every send answered in one event-loop pass together, and
    looks up their recipients' presence together.

    A group commit answers its sends at once: their completions resume in the same
    pass of the loop and each calls :meth:`publish_and_check`; the first schedules a
    flush at the end of that pass (``loop.call_soon``), which makes ONE
    :meth:`Hub.publish` of all their entries (in call order: Redis pipelines them in
    one round trip) and, at the same time, ONE
    :meth:`~hubbub.server.presence.PresenceRegistry.is_online_many` of all the names
    asked about (one Redis round trip). So a commit of N sends costs 2 Redis round trips
    instead of 2N, and a send is still answered only after its entries were handed to
    the broker, with a presence answer read after its commit (never a cached one). The
    same rule for every backend (memory: no round trips, the flush is one extra loop
    pass per group).

    Args:
        hub: the hub whose :meth:`Hub.publish` and presence registry the flush uses.
    """

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._pending: list[tuple[Sequence[StoredMessage], Collection[str], asyncio.Future[bool]]]
        self._pending = []
        self._flushes: set[asyncio.Task[None]] = set()  # running flushes (strong references)

    async def publish_and_check(
        self, entries: Sequence[StoredMessage], names: Collection[str]
    ) -> bool:
        """Publish ``entries`` (with those of the other sends of this loop pass) and tell
        whether any of ``names`` is online (False for no names).

        Raises:
            whatever :meth:`Hub.publish` or the presence lookup raised for the flush
            (e.g. ``redis.exceptions.RedisError`` when Redis is unreachable for presence).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._start_flush)
        self._pending.append((entries, names, future))
        return await future

    def _start_flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._flush(batch))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(
        self, batch: list[tuple[Sequence[StoredMessage], Collection[str], asyncio.Future[bool]]]
    ) -> None:
        entries = [entry for item in batch for entry in item[0]]
        names = {name for item in batch for name in item[1]}
        try:
            if names:
                _, online = await asyncio.gather(
                    self.hub.publish(entries), self.hub.presence.is_online_many(names)
                )
            else:
                await self.hub.publish(entries)
                online = set()
        except asyncio.CancelledError:  # the loop is shutting down: nobody is answered
            for _, _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for _, asked, future in batch:
            if not future.done():
                future.set_result(any(name in online for name in asked))


class SendPipeline:
    """The send path of one hub (:attr:`Hub.sending`).

    Args:
        hub: the hub whose store, presence, broker (:meth:`Hub.publish`) and limits
            the sends use.
    """

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.tasks: set[asyncio.Task[Any]] = set()  # sends awaiting their commit
        self.publisher = CommitPublisher(hub)

    async def send(self, sender: Account, event: InSend) -> SendReceipt:
        """Store one message durably, publish it, and return the receipt (unary SendMessage).

        Raises:
            every error of :meth:`begin_send` and of the coroutine it returns.
        """
        completion = asyncio.create_task(await self.begin_send(sender, event))
        self.tasks.add(completion)
        completion.add_done_callback(self.tasks.discard)
        completion.add_done_callback(_retrieve)
        # Once queued, the message will be stored: publish it even if the caller goes away
        # (a cancelled unary call must not leave a committed message undelivered live).
        return await asyncio.shield(completion)

    async def send_direct(
        self, sender: Account, recipient_name: str, client_id: str, body: str
    ) -> SendReceipt:
        """Store a direct message durably, publish it, and return the receipt.

        Raises:
            MalformedEvent, InvalidMessage, UserNotFound: see :meth:`begin_send`.
        """
        return await self.send(sender, InSend(client_id, recipient_name, body))

    async def on_stream(self, session: ChatSession, event: InSend, index: int) -> None:
        """Queue the send in stream order; a task awaits its commit and answers.

        The reader does not wait for the durable commit, so one stream's sends
        share group commits; at most ``MAX_SENDS_IN_FLIGHT`` wait per stream.
        """
        completion = await self.begin_send(session.account, event)
        task = asyncio.create_task(self._answer_send(session, index, event.client_id, completion))
        self.tasks.add(task)
        session.sends.add(task)
        task.add_done_callback(self.tasks.discard)
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
        check_send(event.client_id, event.body, self.hub.limits.max_message_bytes)
        now = utc_now()
        if event.group:
            name = usernames.group_reference(event.group)
            pending = self.hub.store.store_group_message(
                sender, name, event.client_id, event.body, now
            )
            return self._finish_send(pending, event, name, None)
        if event.random_recipient:
            online = sorted(
                set(await self.hub.presence.online())
                - {sender.username}
                - set(self.hub.bots.accounts)
            )
            if not online:
                raise NobodyOnline("Nobody else is online.")
            target = secrets.choice(online)
        else:
            target = event.recipient
        recipient = await self._recipient(target)
        pending = self.hub.store.store_message(sender, recipient, event.client_id, event.body, now)
        return self._finish_send(pending, event, recipient.username, recipient)

    async def _recipient(self, raw: str) -> Account:
        if not raw:
            raise MalformedEvent.for_field("send.recipient", "a recipient is required")
        recipient = await self.hub.find_account(raw)
        if recipient is None:
            raise UserNotFound("The destination user does not exist")
        return recipient

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
        sessions = self.hub.sessions
        if recipient is not None:  # this node first, then the cluster (presence)
            known = recipient.bot or recipient.username in sessions
            ask: Collection[str] = () if known else (recipient.username,)
            sequence = appended.entries[0].sequence if appended.entries else 0
        else:
            known = any(e.recipient in sessions for e in appended.entries)
            ask = () if known else [e.recipient for e in appended.entries]
            sequence = 0
        online = await self.publisher.publish_and_check(appended.entries, ask) or known
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

    def _count_send(self, kind: str, duplicate: bool) -> None:
        if duplicate:
            self.hub.metrics.sends_duplicate.inc()
        else:
            self.hub.metrics.messages_stored.labels(kind).inc()
