"""Hubbub client: an async library over the generated gRPC stubs, and the `hubbub` CLI.

Import the library from here (`from hubbub.client import Client, Conversation`). It is
the only client code that touches gRPC and protobuf. Everything it returns is a plain
frozen dataclass (`UserInfo`, `LoginResult`, the chat events) and every failure is a
`HubbubError` with an `ErrorKind`, so callers (the CLI, the TUI, scripts, tests) never
see protobuf objects or grpc exceptions.

Typical use::

    async with await Client.connect("127.0.0.1:50051") as client:
        await client.login("alice", "secret-password")
        chat = await client.open_chat()
        chat.resume()
        chat.send("echobot", "hello")
        async for event in chat:
            ...

`Conversation` wraps a `Client` into a chat that survives connection loss
(reconnect with backoff, failover to the next server address, takeover of its own
stale stream with the Welcome's resume token, resume within the right history,
resend of unconfirmed messages) and obeys the server's retry flag: a refusal that
cannot succeed later is reported, never retried forever.

A `Client` takes a `ServerTarget` (see `hubbub.client.target`) or an address text:
"host:port", a comma list of nodes, or `grpcs://host:port` for TLS.

The library's modules, one concept each: `errors` (HubbubError, ErrorKind), `events`
(the plain records and Chat events), `chat` (one Chat stream), `client` (Client: the
connection, the unary calls, credentials), `conversation` (Conversation),
`backoff` (Backoff), `target` (ServerTarget). The CLI (`cli`, `interactive`,
`render`, `session_store`) and the TUI (`tui/`) are built on this library.
"""

import os

# gRPC core reads its log level when it is imported; left unset, grpc 1.6x+ writes INFO
# lines (every failed TLS handshake) to stderr, which breaks the CLI's one-line errors.
# ERROR is grpc's documented default; an explicit GRPC_VERBOSITY still wins.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from .backoff import Backoff
from .chat import Chat
from .client import DEFAULT_SERVER, Client
from .conversation import Conversation
from .errors import ErrorKind, FieldViolation, HubbubError
from .events import (
    ChatEvent,
    ConnectionLost,
    DeliveryReceipt,
    EventRejected,
    GoingAway,
    GroupInfo,
    GroupUpdate,
    HistoryPage,
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
