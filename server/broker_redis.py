"""Fan-out between nodes through Redis pub/sub.

Every node publishes the inbox entries it stored (those of one group commit as one
``messages`` event, :meth:`RedisBroker.publish_messages`), the presence changes of its
streams and session events (revocations, takeovers) as JSON on one channel
(``{prefix}:events``), and every node subscribes to it and hands each event to
its hub (``on_message`` / ``on_presence`` / ``on_session_event``); a hub ignores
users it does not serve.

Pub/sub is at-most-once: an event published while a node is disconnected is
not replayed to it. Nothing is lost for that: messages are stored before they
are published, and a session fills any gap from the store on the next message
it is told about or when its client reconnects. The subscriber reconnects by
itself (with backoff) and logs the loss and the recovery. A publish that fails
(Redis down) is logged and dropped for the same reason: the send has already
been stored and is answered as stored. Session events (revocations, takeovers) are
the exception: nothing else would tell the other nodes, so one that cannot be
published is kept (in order, at most MAX_PENDING_SESSION_EVENTS) and published again
every SESSION_RETRY_S until Redis takes it; a broker outage delays a revocation on the
other nodes, it never cancels it.
See https://redis.io/docs/latest/develop/interact/pubsub/.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from . import redis_pool
from .broker import BrokerHandler, deliver, resubscribed
from .config import redact_url
from .models import (
    EntryKind,
    GroupAction,
    PresenceChange,
    SessionEvent,
    SessionEventKind,
    StoredMessage,
    UserView,
    from_ms,
    to_ms,
)

log = logging.getLogger(__name__)

POLL_S = 1.0  # subscriber wake-up interval (to notice close())
MAX_BACKOFF_S = 5.0
SESSION_RETRY_S = 0.5  # interval of publishing again the session events Redis refused
MAX_PENDING_SESSION_EVENTS = 10_000  # kept while Redis refuses them (oldest dropped)
#: Longest ``messages`` event (characters of JSON) that :meth:`RedisBroker.publish_messages`
#: builds: a batch of larger total size goes out as several PUBLISHes (one pipeline), so a
#: subscriber's output buffer never holds one huge event (Redis ``client-output-buffer-limit
#: pubsub``, 8 MB soft by default).
PUBLISH_CHUNK_CHARS = 256 * 1024


def _message_fields(message: StoredMessage) -> dict[str, Any]:
    return {
        "sequence": message.sequence,
        "message_id": message.message_id,
        "sender": message.sender,
        "sender_display_name": message.sender_display_name,
        "recipient": message.recipient,
        "body": message.body,
        "sent_ms": to_ms(message.sent_at),
        "client_id": message.client_id,
        "kind": int(message.kind),
        "group": message.group,
        "ref_message_id": message.ref_message_id,
        "action": None if message.action is None else str(message.action),
        "members": list(message.members),
        "ref_message_ids": list(message.ref_message_ids),
        "ref_client_ids": list(message.ref_client_ids),
    }


def encode_message(message: StoredMessage) -> str:
    """A stored inbox entry as a JSON event."""
    return json.dumps({"type": "message", **_message_fields(message)}, separators=(",", ":"))


def encode_messages(messages: Sequence[StoredMessage]) -> list[str]:
    """Stored inbox entries, in order, as JSON events of type ``messages`` (a list each),
    cut so that each event is at most :data:`PUBLISH_CHUNK_CHARS` long unless one entry
    alone is longer (then it is an event by itself)."""
    events: list[str] = []
    chunk: list[str] = []
    size = 0
    for message in messages:
        item = json.dumps(_message_fields(message), separators=(",", ":"))
        if chunk and size + len(item) > PUBLISH_CHUNK_CHARS:
            events.append(_messages_event(chunk))
            chunk, size = [], 0
        chunk.append(item)
        size += len(item) + 1
    if chunk:
        events.append(_messages_event(chunk))
    return events


def _messages_event(items: list[str]) -> str:
    return '{"type":"messages","messages":[' + ",".join(items) + "]}"


def encode_presence(change: PresenceChange) -> str:
    """A presence change as a JSON event."""
    user = change.user
    changed = user.presence_changed_at
    return json.dumps(
        {
            "type": "presence",
            "username": user.username,
            "display_name": user.display_name,
            "online": user.online,
            "changed_ms": None if changed is None else to_ms(changed),
            "bot": user.bot,
            "at_ms": to_ms(change.at),
        },
        separators=(",", ":"),
    )


def encode_session_event(event: SessionEvent) -> str:
    """A session event as a JSON event."""
    return json.dumps(
        {
            "type": "session",
            "kind": str(event.kind),
            "username": event.username,
            "holder": event.holder,
        },
        separators=(",", ":"),
    )


def _decode_message(data: dict[str, Any]) -> StoredMessage:
    return StoredMessage(
        sequence=int(data["sequence"]),
        message_id=int(data["message_id"]),
        sender=str(data["sender"]),
        sender_display_name=str(data["sender_display_name"]),
        recipient=str(data["recipient"]),
        body=str(data["body"]),
        sent_at=from_ms(int(data["sent_ms"])),
        client_id=str(data["client_id"]),
        kind=EntryKind(int(data["kind"])),
        group=str(data["group"]),
        ref_message_id=int(data["ref_message_id"]),
        action=None if data["action"] is None else GroupAction(data["action"]),
        members=tuple(str(m) for m in data["members"]),
        ref_message_ids=tuple(int(i) for i in data.get("ref_message_ids", ())),
        ref_client_ids=tuple(str(c) for c in data.get("ref_client_ids", ())),
    )


def decode(
    raw: bytes | str,
) -> StoredMessage | list[StoredMessage] | PresenceChange | SessionEvent:
    """The event encoded by :func:`encode_message`, :func:`encode_messages` (a list, in
    order), :func:`encode_presence` or :func:`encode_session_event`.

    Raises:
        ValueError, KeyError, TypeError: not such an event.
    """
    data: dict[str, Any] = json.loads(raw)
    if data["type"] == "message":
        return _decode_message(data)
    if data["type"] == "messages":
        return [_decode_message(item) for item in data["messages"]]
    if data["type"] == "presence":
        changed = data["changed_ms"]
        view = UserView(
            username=str(data["username"]),
            display_name=str(data["display_name"]),
            online=bool(data["online"]),
            presence_changed_at=None if changed is None else from_ms(int(changed)),
            bot=bool(data["bot"]),
        )
        return PresenceChange(view, from_ms(int(data["at_ms"])))
    if data["type"] == "session":
        return SessionEvent(
            SessionEventKind(data["kind"]), str(data["username"]), str(data["holder"])
        )
    raise ValueError(f"unknown event type {data['type']!r}")


class RedisBroker:
    """:class:`~hubbub.server.broker.Broker` over Redis pub/sub (one channel, every node).

    Args:
        url: ``redis://[:password@]host:port/db`` (or ``rediss://``).
        prefix: channel prefix, so several deployments can share one Redis.
    """

    def __init__(self, url: str, *, prefix: str = "hubbub") -> None:
        self.url = url
        self.channel = f"{prefix}:events"
        self._publisher: aioredis.Redis = redis_pool.connect(
            url, socket_connect_timeout=5, socket_timeout=10, health_check_interval=15
        )
        # The subscriber does not retry inside redis-py: a lost connection surfaces
        # here, is logged, and is re-established by _listen.
        self._subscriber: aioredis.Redis = aioredis.from_url(
            url,
            socket_connect_timeout=5,
            health_check_interval=5,
            retry=Retry(NoBackoff(), 0),
        )
        self._handler: BrokerHandler | None = None
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._publish_failing = False
        self._pending_sessions: deque[str] = deque(maxlen=MAX_PENDING_SESSION_EVENTS)
        self._pending_lock = asyncio.Lock()
        self._retry_task: asyncio.Task[None] | None = None
        self.reconnects = 0  # times the subscription was re-established (tests, metrics)

    async def start(self, handler: BrokerHandler) -> None:
        """Subscribe and deliver every event to ``handler`` from now on.

        Raises:
            RuntimeError: Redis cannot be reached.
        """
        self._handler = handler
        try:
            await self._publisher.ping()
        except (RedisError, OSError) as exc:
            raise RuntimeError(
                f"cannot connect to Redis at {redact_url(self.url)}: {exc}"
            ) from None
        self._task = asyncio.create_task(self._listen(), name="redis-broker")
        # Events published after start() returns reach this node.
        waiter = asyncio.ensure_future(self._subscribed.wait())
        done, _ = await asyncio.wait(
            {waiter, self._task}, timeout=10, return_when="FIRST_COMPLETED"
        )
        if waiter not in done:
            waiter.cancel()
            await self.close()
            raise RuntimeError(f"cannot subscribe to Redis at {redact_url(self.url)}")

    async def publish_message(self, message: StoredMessage) -> None:
        """Announce a stored inbox entry to every node."""
        await self._publish(encode_message(message))

    async def publish_messages(self, messages: Sequence[StoredMessage]) -> None:
        """Announce stored inbox entries to every node, in order, in ONE round trip: one
        PUBLISH of a ``messages`` event per :data:`PUBLISH_CHUNK_CHARS` of JSON (so every
        subscriber reads and decodes one event per batch), several pipelined if the batch
        is larger (not a transaction). Nothing for an empty sequence.

        See https://redis.io/docs/latest/develop/use/pipelining/.
        """
        if messages:
            await self._publish_all(encode_messages(messages))

    async def publish_presence(self, change: PresenceChange) -> None:
        """Announce a presence change to every node."""
        await self._publish(encode_presence(change))

    async def publish_session_event(self, event: SessionEvent) -> None:
        """Announce a session revocation or takeover to every node; if Redis refuses it,
        it is published again every SESSION_RETRY_S (after any earlier one still waiting)
        until Redis takes it."""
        if len(self._pending_sessions) == MAX_PENDING_SESSION_EVENTS:
            log.error("redis broker: too many unpublished session events; dropping the oldest")
        self._pending_sessions.append(encode_session_event(event))
        if not await self._publish_pending_sessions() and self._retry_task is None:
            self._retry_task = asyncio.create_task(self._retry_sessions(), name="redis-retry")

    async def _publish_pending_sessions(self) -> bool:
        """Publish the waiting session events in order; False if Redis refused one."""
        async with self._pending_lock:
            while self._pending_sessions:
                if not await self._publish(self._pending_sessions[0]):
                    return False
                self._pending_sessions.popleft()
        return True

    async def _retry_sessions(self) -> None:
        """Publish the waiting session events every SESSION_RETRY_S until none is left."""
        try:
            while True:
                await asyncio.sleep(SESSION_RETRY_S)
                if await self._publish_pending_sessions():
                    return
        finally:
            self._retry_task = None

    async def _publish(self, payload: str) -> bool:
        """Publish one event; False (logged once per outage) if Redis refused it."""
        return await self._publish_all([payload])

    async def _publish_all(self, payloads: list[str]) -> bool:
        """Publish events in order, several as one pipeline (one round trip); False
        (logged once per outage) if Redis refused them."""
        try:
            if len(payloads) == 1:
                await self._publisher.publish(self.channel, payloads[0])
            else:
                async with self._publisher.pipeline(transaction=False) as pipe:
                    for payload in payloads:
                        pipe.publish(self.channel, payload)
                    await pipe.execute()
        except (RedisError, OSError) as exc:
            if not self._publish_failing:
                log.warning(
                    "redis broker: publish failed (%s); stored messages are delivered from the "
                    "store when the recipient gets the next message or reconnects",
                    exc,
                )
            self._publish_failing = True
            return False
        if self._publish_failing:
            log.info("redis broker: publishing again")
        self._publish_failing = False
        return True

    async def close(self) -> None:
        """Stop delivering (publishing keeps working until :meth:`aclose`)."""
        self._handler = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def aclose(self) -> None:
        """Stop delivering and retrying, and close every connection."""
        await self.close()
        retry, self._retry_task = self._retry_task, None
        if retry is not None:
            retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await retry
        await self._publisher.aclose()
        await self._subscriber.aclose()

    async def _listen(self) -> None:
        """Subscribe, dispatch events, and resubscribe after a lost connection."""
        backoff = 0.1
        lost = False
        while True:
            pubsub = self._subscriber.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                if lost:
                    self.reconnects += 1
                    log.warning("redis broker: subscribed again to %s", self.channel)
                    if self._handler is not None:
                        resubscribed(self._handler)
                lost = False
                backoff = 0.1
                self._subscribed.set()
                while True:
                    item = await pubsub.get_message(timeout=POLL_S)
                    if item is not None and item.get("type") == "message":
                        self._dispatch(item["data"])
            except (RedisError, OSError) as exc:
                if not lost:
                    log.warning(
                        "redis broker: connection to %s lost (%s); reconnecting",
                        redact_url(self.url),
                        exc,
                    )
                lost = True
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _dispatch(self, raw: bytes | str) -> None:
        handler = self._handler
        if handler is None:
            return
        try:
            event = decode(raw)
        except (ValueError, KeyError, TypeError):
            log.warning("redis broker: ignored a malformed event on %s", self.channel)
            return
        if isinstance(event, list):  # one handler failure does not drop the rest
            for message in event:
                deliver(handler, message)
        else:
            deliver(handler, event)
