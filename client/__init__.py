"""Hubbub client: an async library over the generated gRPC stubs, and the `hubbub` CLI.

The library API (see `hubbub.client.api`) returns plain dataclasses and raises
`HubbubError`; it never hands protobuf objects or grpc exceptions to its callers.
"""

from .api import (
    DEFAULT_SERVER,
    Chat,
    ChatEvent,
    Client,
    ConnectionLost,
    Conversation,
    DeliveryReceipt,
    ErrorKind,
    EventRejected,
    FieldViolation,
    GoingAway,
    GroupInfo,
    GroupUpdate,
    HistoryPage,
    HubbubError,
    IncomingMessage,
    LoginResult,
    Pong,
    PresenceChanged,
    Reconnected,
    SendConfirmed,
    Synced,
    UserInfo,
    Welcome,
)
from .render import Backoff


async def connect(address: str = DEFAULT_SERVER, *, token: str | None = None) -> Client:
    """Connect to a Hubbub server ("host:port"); raises HubbubError(UNAVAILABLE) if unreachable."""
    return await Client.connect(address, token=token)


__all__ = [
    "DEFAULT_SERVER",
    "Backoff",
    "Chat",
    "ChatEvent",
    "Client",
    "ConnectionLost",
    "Conversation",
    "DeliveryReceipt",
    "ErrorKind",
    "EventRejected",
    "FieldViolation",
    "GoingAway",
    "GroupInfo",
    "GroupUpdate",
    "HistoryPage",
    "HubbubError",
    "IncomingMessage",
    "LoginResult",
    "Pong",
    "PresenceChanged",
    "Reconnected",
    "SendConfirmed",
    "Synced",
    "UserInfo",
    "Welcome",
    "connect",
]
