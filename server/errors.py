"""Domain errors: one base class, a stable reason code per error.

Each error carries a canonical status category (the google.rpc.Code names of
AIP-193) so the transport maps it to a gRPC status in one place
(:mod:`hubbub.server.grpc_errors`), an optional list of field violations
(google.rpc.BadRequest), and whether the client should retry: ``retry`` is True
when the same call may succeed later unchanged (``retry_after_s`` then suggests
the wait, seconds) and False when retrying cannot help (fix the request, log in
again or give up). The transport reports it as ``ErrorInfo.metadata["retry"]``
plus a ``google.rpc.RetryInfo`` (AIP-194), like Centrifuge's reconnect flag.

The server's exceptions (as websockets' ``exceptions.py``)::

    Exception
    ├── HubbubError            a refusal reported to a client (reason, category, retry)
    │   ├── InvalidArgument    … one class per reason, below
    │   └── …
    ├── OutboxClosed           a stream's outbox is closed (internal signal, never sent)
    └── RuntimeError
        ├── StartupError       the server cannot start (operator-facing, reason, retry)
        │   ├── ConfigurationError   flags / environment (also ``--ldap-*``) contradict
        │   │                        or are malformed
        │   └── ListenError          the port cannot be bound
        ├── SchemaTooNew       the database was written by a newer server
        └── BackupError        backup, restore, export, import (``backup_errors.py``)
            ├── DatabaseInUse
            └── ExportFormatError

Every refusal says whether retrying unchanged can help (``retry``), and every class
but the backup family has a stable ``reason``. Those outside :class:`HubbubError`
stay subclasses of what their callers caught before (``RuntimeError`` for the
operator-facing ones), so ``except RuntimeError`` in ``hubbub-server`` still
catches them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Category(enum.Enum):
    """Canonical status categories (names of google.rpc.Code)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"
    ABORTED = "ABORTED"
    OUT_OF_RANGE = "OUT_OF_RANGE"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad request field: ``field`` is a dotted path (e.g. ``"send.body"``)."""

    field: str
    description: str


class HubbubError(Exception):
    """Base of every error the server reports to a client.

    Attributes:
        reason: stable machine-readable code (AIP-193 ErrorInfo.reason style).
        category: canonical status category.
        message: a sentence for a person.
        violations: field-level problems (google.rpc.BadRequest).
        retry: True if the same call may succeed later unchanged; False if not.
        retry_after_s: suggested wait before a retry, seconds (None: the client's backoff).
    """

    reason = "INTERNAL"
    category = Category.INTERNAL
    retry = False
    retry_after_s: float | None = None

    def __init__(
        self,
        message: str,
        violations: tuple[FieldViolation, ...] = (),
        *,
        retry: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.violations = violations
        if retry is not None:
            self.retry = retry


def _invalid(field: str, description: str) -> tuple[FieldViolation, ...]:
    return (FieldViolation(field, description),)


class InvalidArgument(HubbubError):
    """A request field is malformed; ``violations`` names it."""

    reason = "INVALID_ARGUMENT"
    category = Category.INVALID_ARGUMENT

    @classmethod
    def for_field(cls, field: str, description: str) -> InvalidArgument:
        """Build the error for one bad field; the message is ``"<field>: <description>"``."""
        return cls(f"{field}: {description}", _invalid(field, description))


class InvalidUsername(InvalidArgument):
    """The username breaks the naming rules (RFC 8265 and Hubbub's charset)."""

    reason = "USERNAME_INVALID"


class ReservedUsername(InvalidArgument):
    """The username is reserved for the server (echobot, admin, …)."""

    reason = "USERNAME_RESERVED"


class InvalidPassword(InvalidArgument):
    """The password is too short or too long."""

    reason = "PASSWORD_INVALID"


class InvalidMessage(InvalidArgument):
    """A message body is empty or over the size limit."""

    reason = "MESSAGE_INVALID"


class MalformedEvent(InvalidArgument):
    """A Chat event is empty or has a bad field outside the body."""

    reason = "EVENT_MALFORMED"


class UsernameTaken(HubbubError):
    """Another account already has this (case-mapped) username."""

    reason = "USERNAME_TAKEN"
    category = Category.ALREADY_EXISTS


class UsernameConfusable(UsernameTaken):
    """The username looks like an existing one (same UTS #39 skeleton); the
    message does not say which one."""

    reason = "USERNAME_CONFUSABLE"


class AuthenticationFailed(HubbubError):
    """Unknown user or wrong password; the two are deliberately indistinguishable."""

    reason = "AUTHENTICATION_FAILED"
    category = Category.UNAUTHENTICATED


class TokenInvalid(HubbubError):
    """The session token is missing, unknown, expired or revoked."""

    reason = "TOKEN_INVALID"
    category = Category.UNAUTHENTICATED


class LoginThrottled(HubbubError):
    """Too many failed logins for this name; ``retry_after_s`` says when to retry."""

    reason = "LOGIN_THROTTLED"
    category = Category.RESOURCE_EXHAUSTED
    retry = True

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(
            f"Too many failed login attempts; try again in {max(1, round(retry_after_s))} s."
        )
        self.retry_after_s = retry_after_s


class CurrentPasswordThrottled(HubbubError):
    """Too many current-password checks in this session (``UpdateProfile``).

    ``retry_after_s`` says when one check is possible again.
    """

    reason = "PASSWORD_CHECK_THROTTLED"
    category = Category.RESOURCE_EXHAUSTED

    retry = True

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(
            "Too many current-password attempts in this session; "
            f"try again in {max(1, round(retry_after_s))} s."
        )
        self.retry_after_s = retry_after_s


class RegistrationThrottled(HubbubError):
    """Too many registrations from this client address; ``retry_after_s`` says when to retry."""

    reason = "REGISTRATION_THROTTLED"
    category = Category.RESOURCE_EXHAUSTED

    retry = True

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(
            "Too many accounts were created from your address; "
            f"try again in {max(1, round(retry_after_s))} s."
        )
        self.retry_after_s = retry_after_s


class ThrottleUnavailable(HubbubError):
    """The attempt counters (Redis) cannot be reached; the attempt is refused, retry later."""

    reason = "THROTTLE_UNAVAILABLE"
    category = Category.UNAVAILABLE

    retry = True

    def __init__(self, retry_after_s: float = 1.0) -> None:
        super().__init__("The server cannot check its attempt limits right now; retry later.")
        self.retry_after_s = retry_after_s


class UserNotFound(HubbubError):
    """The named user does not exist."""

    reason = "USER_NOT_FOUND"
    category = Category.NOT_FOUND


class RegistrationClosed(HubbubError):
    """Register is off: ``--registration closed`` (an operator adds accounts) or ``--ldap-only``."""

    reason = "REGISTRATION_CLOSED"
    category = Category.FAILED_PRECONDITION


class GroupNotFound(HubbubError):
    """The named group does not exist."""

    reason = "GROUP_NOT_FOUND"
    category = Category.NOT_FOUND


class GroupNameTaken(HubbubError):
    """A group with this (case-mapped) name exists."""

    reason = "GROUP_NAME_TAKEN"
    category = Category.ALREADY_EXISTS


class NotGroupMember(HubbubError):
    """The caller is not a member of the group it acts on."""

    reason = "NOT_A_MEMBER"
    category = Category.PERMISSION_DENIED


class NobodyOnline(HubbubError):
    """A random recipient was asked for but no other user is online."""

    reason = "NOBODY_ONLINE"
    category = Category.FAILED_PRECONDITION
    retry = True


class AlreadyConnected(HubbubError):
    """The user already has a live Chat stream."""

    reason = "ALREADY_CONNECTED"
    category = Category.ALREADY_EXISTS


class ServerFull(HubbubError):
    """The server-wide cap on live streams (``--max-clients``) is reached."""

    reason = "SERVER_FULL"
    category = Category.RESOURCE_EXHAUSTED
    retry = True
    retry_after_s = 5.0


class SlowConsumer(HubbubError):
    """The client did not read fast enough; its stream is closed, its messages stay stored."""

    reason = "SLOW_CONSUMER"
    category = Category.RESOURCE_EXHAUSTED
    retry = True
    retry_after_s = 1.0


class ShuttingDown(HubbubError):
    """The server is shutting down; reconnect later."""

    reason = "SERVER_SHUTDOWN"
    category = Category.UNAVAILABLE
    retry = True
    retry_after_s = 1.0


class DirectoryUnavailable(HubbubError):
    """The login directory (LDAP) could not be reached or answered too late; retry later.

    Says nothing about the credentials, so it is not counted as a failed login.
    """

    reason = "DIRECTORY_UNAVAILABLE"
    category = Category.UNAVAILABLE
    retry = True
    retry_after_s = 2.0


# -- the end of a live session (the Chat stream's final status) --------------------------


class SessionRevoked(TokenInvalid):
    """The stream's session was logged out or revoked by a password change (OWASP Session
    Management Cheat Sheet: invalidate sessions on logout and credential change)."""

    reason = "SESSION_REVOKED"


class SessionUncheckable(HubbubError):
    """The stream's session could not be rechecked in the store after a possible
    revocation; the stream ends (fail closed) and the client may reconnect at once."""

    category = Category.UNAVAILABLE
    reason = "SESSION_UNCHECKABLE"
    retry = True


class SessionExpired(TokenInvalid):
    """The stream's session token expired while the stream was open."""

    reason = "SESSION_EXPIRED"


class SessionTakenOver(HubbubError):
    """A newer stream of the same client (it showed this stream's resume token) took over."""

    reason = "SESSION_TAKEN_OVER"
    category = Category.ABORTED


class HistoryChanged(HubbubError):
    """Resume named a position in another history (the database was restored or imported);
    the server replays from the acknowledged sequence instead."""

    reason = "HISTORY_CHANGED"
    category = Category.FAILED_PRECONDITION


class ResumeBeyondEnd(HubbubError):
    """Resume named a sequence after the last stored one; the server replays from the
    acknowledged sequence instead."""

    reason = "RESUME_BEYOND_END"
    category = Category.OUT_OF_RANGE


class ClientIdReused(HubbubError):
    """A send reuses a client id the sender already used for a different message (other
    recipient, group or body); the first message stays the only one stored under that id."""

    reason = "CLIENT_ID_REUSED"
    category = Category.FAILED_PRECONDITION


class UndecodableRequest(InvalidArgument):
    """A request frame is not a valid protobuf message of the method's request type
    (random bytes, a wrong wire type, invalid UTF-8 in a string field)."""

    reason = "REQUEST_UNDECODABLE"


class InternalError(HubbubError):
    """An unexpected failure inside the server; details are only in the server log,
    never on the wire."""

    reason = "INTERNAL"
    category = Category.INTERNAL

    def __init__(self, message: str = "internal error") -> None:
        super().__init__(message)


class OutboxClosed(Exception):
    """A stream's outbox (:mod:`.outbox`) is closed (and, for a graceful close, drained):
    the writer or a waiting ``put`` stops. An internal signal between the session and the
    stream's writer task; never reported to a client (the stream's end says why)."""

    reason = "OUTBOX_CLOSED"
    retry = False


class StartupError(RuntimeError):
    """The server cannot start (``hubbub-server serve``, or an in-process start); ``str()``
    is one line for the operator. Not reported to clients. ``retry`` is True when starting
    again unchanged may succeed (e.g. once a port is free)."""

    reason = "STARTUP_FAILED"
    retry = False


class ConfigurationError(StartupError):
    """Flags or ``HUBBUB_*`` variables contradict each other or are malformed (or a file
    they name cannot be read, or the ``--ldap-*`` settings are inconsistent); fix the
    settings, retrying unchanged cannot help."""

    reason = "CONFIGURATION_INVALID"


class ListenError(StartupError):
    """The address cannot be bound: the port is in use or the host is not local."""

    reason = "LISTEN_FAILED"
    retry = True


class SchemaTooNew(RuntimeError):
    """The database's schema version is newer than this server's
    (:data:`.schema.SCHEMA_VERSION`): upgrade ``hubbub-server``; retrying cannot help.
    Raised when a store opens or migrates a database, and by backup, restore and import
    (which report it as a :class:`~.backup_errors.BackupError`)."""

    reason = "SCHEMA_TOO_NEW"
    retry = False
