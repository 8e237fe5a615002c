"""Chat stream events as plain records: client → server (``In*``) and server → client (``Out*``).

The transport decodes ``hubbub.v1.ChatRequest`` into an ``InEvent`` and encodes
each ``OutEvent`` into a ``hubbub.v1.ChatResponse``; the hub sees only these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from .errors import HubbubError
from .models import InboxCursor, PresenceChange, SendReceipt, StoredMessage, UserView


@dataclass(frozen=True, slots=True)
class InResume:
    """The client has every inbox message up to ``after_sequence`` (None: use the acked cursor)
    of the history ``history_id`` (empty: the client has no earlier position to check);
    ``batching``: the client reads several events per frame from now on (a transport
    matter: the hub ignores it)."""

    after_sequence: int | None
    history_id: str = ""
    batching: bool = False


@dataclass(frozen=True, slots=True)
class InSend:
    """Send ``body`` under the client-chosen ``client_id`` to exactly one of:
    the user ``recipient``, the ``group``, or a random online user."""

    client_id: str
    recipient: str
    body: str
    group: str = ""
    random_recipient: bool = False


@dataclass(frozen=True, slots=True)
class InAck:
    """The client has shown every inbox message up to ``sequence``."""

    sequence: int


@dataclass(frozen=True, slots=True)
class InPing:
    """Liveness check; answered with :class:`OutPong`."""

    nonce: int


@dataclass(frozen=True, slots=True)
class InMalformed:
    """A client event the transport could not decode (e.g. no event set)."""

    error: HubbubError


InEvent = InResume | InSend | InAck | InPing | InMalformed


@dataclass(frozen=True, slots=True)
class OutWelcome:
    """First event of a stream: who the user is, who is online, inbox positions, the
    history the positions belong to, this stream's resume token (the secret a reconnecting
    client shows to take the stream over) and when the session token expires (None: never)."""

    user: UserView
    online: Sequence[UserView]
    cursor: InboxCursor
    history_id: str = ""
    resume_token: str = ""
    session_expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class OutMessage:
    """An inbox entry for this user (text, delivery receipt or group update)."""

    message: StoredMessage


@dataclass(frozen=True, slots=True)
class OutSendResult:
    """A send was stored durably."""

    receipt: SendReceipt


@dataclass(frozen=True, slots=True)
class OutPresence:
    """Another user came online or went offline."""

    change: PresenceChange


@dataclass(frozen=True, slots=True)
class OutError:
    """The client event number ``request_index`` (1-based) was refused."""

    request_index: int
    client_id: str
    error: HubbubError


@dataclass(frozen=True, slots=True)
class OutGoingAway:
    """The server closes this stream; reconnect after ``reconnect_delay_ms`` milliseconds."""

    reason: str
    message: str
    reconnect_delay_ms: int


@dataclass(frozen=True, slots=True)
class OutPong:
    """Answer to :class:`InPing`."""

    nonce: int


@dataclass(frozen=True, slots=True)
class OutSynced:
    """Replay of stored messages complete up to ``last_sequence``."""

    last_sequence: int


OutEvent = (
    OutWelcome
    | OutMessage
    | OutSendResult
    | OutPresence
    | OutError
    | OutGoingAway
    | OutPong
    | OutSynced
)
