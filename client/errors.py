"""Errors of the client library: `HubbubError` with an `ErrorKind`.

Every failure the library reports is a `HubbubError`. Its `kind` is the standard gRPC
status code the server (or grpc) gave, as an `ErrorKind`; the google.rpc status details
the server attaches (BadRequest field violations, ErrorInfo reason and retry flag,
RetryInfo delay) are parsed into its attributes here, so callers never see grpc
exceptions or protobuf.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import grpc
from google.rpc import error_details_pb2, status_pb2

_STATUS_DETAILS_KEY: Final = "grpc-status-details-bin"


class ErrorKind(enum.Enum):
    """What went wrong, in the terms of the standard status codes the server uses."""

    UNAVAILABLE = "unavailable"
    UNAUTHENTICATED = "unauthenticated"
    ALREADY_EXISTS = "already_exists"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    INVALID_ARGUMENT = "invalid_argument"
    NOT_FOUND = "not_found"
    PERMISSION_DENIED = "permission_denied"
    FAILED_PRECONDITION = "failed_precondition"
    ABORTED = "aborted"
    OUT_OF_RANGE = "out_of_range"
    UNIMPLEMENTED = "unimplemented"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    CANCELLED = "cancelled"
    INTERNAL = "internal"
    OTHER = "other"


_KIND_BY_CODE: Final[dict[grpc.StatusCode, ErrorKind]] = {
    grpc.StatusCode.UNAVAILABLE: ErrorKind.UNAVAILABLE,
    grpc.StatusCode.UNAUTHENTICATED: ErrorKind.UNAUTHENTICATED,
    grpc.StatusCode.ALREADY_EXISTS: ErrorKind.ALREADY_EXISTS,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ErrorKind.RESOURCE_EXHAUSTED,
    grpc.StatusCode.INVALID_ARGUMENT: ErrorKind.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND: ErrorKind.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED: ErrorKind.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION: ErrorKind.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED: ErrorKind.ABORTED,
    grpc.StatusCode.OUT_OF_RANGE: ErrorKind.OUT_OF_RANGE,
    grpc.StatusCode.UNIMPLEMENTED: ErrorKind.UNIMPLEMENTED,
    grpc.StatusCode.DEADLINE_EXCEEDED: ErrorKind.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED: ErrorKind.CANCELLED,
    grpc.StatusCode.INTERNAL: ErrorKind.INTERNAL,
}

#: The kind of a canonical status number (google.rpc.Code), as Error events carry it.
_KIND_BY_NUMBER: Final[dict[int, ErrorKind]] = {
    code.value[0]: kind for code, kind in _KIND_BY_CODE.items()
}


def kind_of_code(code: int) -> ErrorKind:
    """The ErrorKind of a canonical status number (e.g. 5 → NOT_FOUND; unknown → OTHER)."""
    return _KIND_BY_NUMBER.get(code, ErrorKind.OTHER)


#: Kinds after which a chat is worth reopening (the others are refusals).
TRANSIENT_KINDS: Final = frozenset(
    {
        ErrorKind.UNAVAILABLE,
        ErrorKind.CANCELLED,
        ErrorKind.DEADLINE_EXCEEDED,
        ErrorKind.INTERNAL,
        ErrorKind.OTHER,
    }
)

#: Kinds that may succeed later unchanged when the server sends no retry flag.
RETRYABLE_KINDS: Final = TRANSIENT_KINDS | {ErrorKind.RESOURCE_EXHAUSTED}


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request: `field` is a path such as "send.body"."""

    field: str
    description: str


class HubbubError(Exception):
    """A call failed: `kind` says how, `message` is the server's sentence for a person.

    `field_violations` lists bad request fields (from google.rpc.BadRequest details);
    `reason` is the server's stable machine-readable word (google.rpc.ErrorInfo), such as
    "GROUP_NOT_FOUND" or "USER_NOT_FOUND", or "" if the server sent none. `retry` is the
    server's ErrorInfo metadata["retry"] (True/False; None if it sent none) and
    `retry_delay` the google.rpc.RetryInfo delay in seconds (None if none).
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        field_violations: Iterable[FieldViolation] = (),
        *,
        reason: str = "",
        retry: bool | None = None,
        retry_delay: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.field_violations: tuple[FieldViolation, ...] = tuple(field_violations)
        self.reason = reason
        self.retry = retry
        self.retry_delay = retry_delay

    @property
    def retryable(self) -> bool:
        """True if the same call may succeed later unchanged.

        The server's flag decides when it sent one; otherwise the kind does
        (UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, ... yes; refusals no).
        """
        if self.retry is not None:
            return self.retry
        return self.kind in RETRYABLE_KINDS

    def fields(self) -> set[str]:
        """The names of the fields the server complained about."""
        return {v.field for v in self.field_violations}

    def detail(self) -> str:
        """The field problems joined by "; " if there are any, else `message`."""
        return "; ".join(v.description for v in self.field_violations) or self.message

    def __repr__(self) -> str:
        return f"HubbubError({self.kind.name}, {self.message!r})"


def _status_details(metadata: Any) -> list[Any]:
    """The google.protobuf.Any details of a google.rpc.Status in trailing metadata."""
    out: list[Any] = []
    if not metadata:
        return out
    for item in metadata:
        try:
            key, value = item
        except (TypeError, ValueError):
            continue
        if key != _STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status()
        try:
            status.ParseFromString(value)
        except Exception:  # a damaged detail is ignored, the status code still counts
            continue
        out.extend(status.details)
    return out


def _violations_from_metadata(metadata: Any) -> list[FieldViolation]:
    """Extract google.rpc.BadRequest field violations from trailing metadata, if any."""
    out: list[FieldViolation] = []
    for detail in _status_details(metadata):
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out.extend(FieldViolation(v.field, v.description) for v in bad.field_violations)
    return out


def _reason_from_metadata(metadata: Any) -> str:
    """The google.rpc.ErrorInfo reason in trailing metadata, or "" if there is none."""
    return _error_info(metadata)[0]


def _error_info(metadata: Any) -> tuple[str, bool | None, float | None]:
    """(reason, retry flag, retry delay in seconds) from the status details.

    The reason and `metadata["retry"]` ("true"/"false") come from google.rpc.ErrorInfo,
    the delay from google.rpc.RetryInfo; each is ""/None when the server sent none.
    """
    reason, retry, delay = "", None, None
    for detail in _status_details(metadata):
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = str(info.reason)
            flag = info.metadata.get("retry", "").strip().lower()
            if flag in ("true", "false"):
                retry = flag == "true"
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry_info = error_details_pb2.RetryInfo()
            detail.Unpack(retry_info)
            delay = retry_info.retry_delay.ToTimedelta().total_seconds()
    return reason, retry, delay


def unreachable(where: str) -> str:
    """The sentence for a server that cannot be reached; `where` is "host:port", or
    "grpcs://host:port" for TLS (then a refused certificate is the other likely cause)."""
    if where.startswith("grpcs://"):
        return (
            f"Cannot reach the Hubbub server at {where} (down, not speaking TLS, or its "
            "certificate is not trusted)."
        )
    return f"Cannot reach the Hubbub server at {where}."


def _error_from_rpc(exc: grpc.RpcError, address: str) -> HubbubError:
    """Turn a grpc error into a HubbubError with a human sentence."""
    code = exc.code()
    kind = _KIND_BY_CODE.get(code, ErrorKind.OTHER)
    details = exc.details() or ""
    if kind is ErrorKind.UNAVAILABLE:
        details = unreachable(address)
    try:
        metadata = exc.trailing_metadata()
    except Exception:
        metadata = None
    reason, retry, delay = _error_info(metadata)
    return HubbubError(
        kind,
        details or "The server refused the request.",
        _violations_from_metadata(metadata),
        reason=reason,
        retry=retry,
        retry_delay=delay,
    )
