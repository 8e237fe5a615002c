"""The broker interface: fan-out of stored messages and presence changes to the nodes.

One delivery path whatever the backend: the hub stores a message, then
publishes it; the broker hands it to every node's :class:`BrokerHandler`
(``broker_memory`` for one process) through :func:`deliver`. Handlers never await.
A handler that raises is logged; the publisher never sees the error and the
events after it are still delivered (tests/integration/test_broker_contract.py
pins the contract on every backend).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from .models import PresenceChange, SessionEvent, StoredMessage

log = logging.getLogger(__name__)


class BrokerHandler(Protocol):
    """What a node does with broker traffic (implemented by the hub)."""

    def on_message(self, message: StoredMessage) -> None:
        """A message was stored in ``message.recipient``'s inbox."""

    def on_presence(self, change: PresenceChange) -> None:
        """A user's presence changed."""

    def on_session_event(self, event: SessionEvent) -> None:
        """A user's sessions were revoked or one of its streams was taken over."""

    def on_resubscribed(self) -> None:
        """The node subscribed again after a lost connection: events published meanwhile
        (revocations included) may have been missed."""


class Broker(Protocol):
    """Publish/subscribe between hub instances."""

    async def start(self, handler: BrokerHandler) -> None:
        """Begin delivering traffic to ``handler``."""

    async def publish_message(self, message: StoredMessage) -> None:
        """Announce a stored message to the node(s) serving its recipient."""

    async def publish_messages(self, messages: Sequence[StoredMessage]) -> None:
        """Announce several stored messages, in order, as :meth:`publish_message` of each
        would (Redis: one pipelined round trip for all of them; nothing for an empty
        sequence)."""

    async def publish_presence(self, change: PresenceChange) -> None:
        """Announce a presence change to every node."""

    async def publish_session_event(self, event: SessionEvent) -> None:
        """Announce a session revocation or takeover to every node (this one included)."""

    async def close(self) -> None:
        """Stop delivering."""


def deliver(handler: BrokerHandler, event: StoredMessage | PresenceChange | SessionEvent) -> None:
    """Hand ``event`` to the matching callback of ``handler``; an exception it raises is
    logged with its traceback and not propagated (the next event is still delivered)."""
    try:
        if isinstance(event, StoredMessage):
            handler.on_message(event)
        elif isinstance(event, SessionEvent):
            handler.on_session_event(event)
        else:
            handler.on_presence(event)
    except Exception:
        log.exception("broker: the %s handler failed", type(event).__name__)


def resubscribed(handler: BrokerHandler) -> None:
    """Call ``handler.on_resubscribed()``; an exception it raises is logged, not propagated
    (the subscription stays up)."""
    try:
        handler.on_resubscribed()
    except Exception:
        log.exception("broker: the resubscribe handler failed")
