"""The send pipeline: validate a message, store it durably, publish it, answer the sender.

One path for the Chat stream (sends share group commits: the stream's reader does
not wait for the commit, at most ``MAX_SENDS_IN_FLIGHT`` per stream do) and the
unary SendMessage; echobot uses it too (:mod:`hubbub.server.bots`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Coroutine
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
from .models import Account, Appended, EntryKind, SendReceipt, utc_now

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


class SendPipeline:
    """The send path of one hub (:attr:`Hub.sending`).

    Args:
        hub: the hub whose store, presence, broker (:meth:`Hub.publish`) and limits
            the sends use.
    """

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.tasks: set[asyncio.Task[None]] = set()  # stream sends awaiting their commit

    async def send(self, sender: Account, event: InSend) -> SendReceipt:
        """Store one message durably, publish it, and return the receipt (unary SendMessage).

        Raises:
            every error of :meth:`begin_send` and of the coroutine it returns.
        """
        return await (await self.begin_send(sender, event))

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
        await self.hub.publish(appended.entries)
        if recipient is not None:  # this node first, then the cluster (presence)
            online = (
                recipient.bot
                or recipient.username in self.hub.sessions
                or await self.hub.presence.is_online(recipient.username)
            )
            sequence = appended.entries[0].sequence if appended.entries else 0
        else:
            online = any(e.recipient in self.hub.sessions for e in appended.entries)
            if not online and appended.entries:
                everyone = await self.hub.presence.online()
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

    def _count_send(self, kind: str, duplicate: bool) -> None:
        if duplicate:
            self.hub.metrics.sends_duplicate.inc()
        else:
            self.hub.metrics.messages_stored.labels(kind).inc()
