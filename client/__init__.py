"""Hubbub client: an async library over the generated gRPC stubs, and the `hubbub` CLI.

The library API (see `hubbub.client.api`) returns plain dataclasses and raises
`HubbubError`; it never hands protobuf objects or grpc exceptions to its callers.
"""

import os

# gRPC core reads its log level when it is imported; left unset, grpc 1.6x+ writes INFO
# lines (every failed TLS handshake) to stderr, which breaks the CLI's one-line errors.
# ERROR is grpc's documented default; an explicit GRPC_VERBOSITY still wins.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

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
    UserPage,
    Welcome,
)
from .backoff import Backoff
from .target import ServerTarget, TargetError, parse_target


async def connect(
    target: str | ServerTarget = DEFAULT_SERVER, *, token: str | None = None
) -> Client:
    """Connect to a Hubbub server ("host:port", a comma list, or `grpcs://host:port`);
    raises HubbubError(UNAVAILABLE) if none of its addresses can be reached."""
    return await Client.connect(target, token=token)


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
    "ServerTarget",
    "Synced",
    "TargetError",
    "UserInfo",
    "UserPage",
    "Welcome",
    "connect",
    "parse_target",
]
