"""In-process broker: one node, direct hand-off to the local hub (before publish returns)."""

from __future__ import annotations

from collections.abc import Sequence

from .broker import BrokerHandler, deliver
from .models import PresenceChange, SessionEvent, StoredMessage


class MemoryBroker:
    """:class:`~hubbub.server.broker.Broker` for a single process."""

    def __init__(self) -> None:
        self._handler: BrokerHandler | None = None

    async def start(self, handler: BrokerHandler) -> None:
        """Deliver to ``handler`` from now on."""
        self._handler = handler

    async def publish_message(self, message: StoredMessage) -> None:
        """Hand the message to the local hub."""
        if self._handler is not None:
            deliver(self._handler, message)

    async def publish_messages(self, messages: Sequence[StoredMessage]) -> None:
        """Hand each message, in order, to the local hub."""
        for message in messages:
            await self.publish_message(message)

    async def publish_presence(self, change: PresenceChange) -> None:
        """Hand the presence change to the local hub."""
        if self._handler is not None:
            deliver(self._handler, change)

    async def publish_session_event(self, event: SessionEvent) -> None:
        """Hand the session event to the local hub."""
        if self._handler is not None:
            deliver(self._handler, event)

    async def close(self) -> None:
        """Stop delivering."""
        self._handler = None
