"""Domain errors: one base class, a stable reason code per error.

Each error carries a canonical status category (the google.rpc.Code names of
AIP-193) so the transport maps it to a gRPC status in one place
(:mod:`hubbub.server.grpc_errors`), and an optional list of field violations
(google.rpc.BadRequest).
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
    """

    reason = "INTERNAL"
    category = Category.INTERNAL

    def __init__(self, message: str, violations: tuple[FieldViolation, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.violations = violations


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

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(
            f"Too many failed login attempts; try again in {max(1, round(retry_after_s))} s."
        )
        self.retry_after_s = retry_after_s


class UserNotFound(HubbubError):
    """The named user does not exist."""

    reason = "USER_NOT_FOUND"
    category = Category.NOT_FOUND


class RegistrationClosed(HubbubError):
    """Accounts come only from the login directory (``--ldap-only``); Register is off."""

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


class AlreadyConnected(HubbubError):
    """The user already has a live Chat stream."""

    reason = "ALREADY_CONNECTED"
    category = Category.ALREADY_EXISTS


class ServerFull(HubbubError):
    """The server-wide cap on live streams (``--max-clients``) is reached."""

    reason = "SERVER_FULL"
    category = Category.RESOURCE_EXHAUSTED


class SlowConsumer(HubbubError):
    """The client did not read fast enough; its stream is closed, its messages stay stored."""

    reason = "SLOW_CONSUMER"
    category = Category.RESOURCE_EXHAUSTED


class ShuttingDown(HubbubError):
    """The server is shutting down; reconnect later."""

    reason = "SERVER_SHUTDOWN"
    category = Category.UNAVAILABLE


class DirectoryUnavailable(HubbubError):
    """The login directory (LDAP) could not be reached or answered too late; retry later.

    Says nothing about the credentials, so it is not counted as a failed login.
    """

    reason = "DIRECTORY_UNAVAILABLE"
    category = Category.UNAVAILABLE


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
