"""Transport: the one place that maps domain errors to gRPC statuses.

Field violations travel as ``google.rpc.BadRequest`` in the
``grpc-status-details-bin`` trailer (AIP-193), via grpcio-status. Every status has
a ``google.rpc.ErrorInfo`` whose ``metadata["retry"]`` is ``"true"`` or ``"false"``
(:attr:`HubbubError.retry`); a retryable one also has a ``google.rpc.RetryInfo``
with the delay to wait (AIP-194).
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from .errors import Category, HubbubError

STATUS_OF: dict[Category, grpc.StatusCode] = {
    Category.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    Category.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Category.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    Category.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    Category.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Category.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Category.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    Category.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Category.INTERNAL: grpc.StatusCode.INTERNAL,
    Category.ABORTED: grpc.StatusCode.ABORTED,
    Category.OUT_OF_RANGE: grpc.StatusCode.OUT_OF_RANGE,
}
DEFAULT_RETRY_DELAY_S = 1.0  # RetryInfo delay when the error suggests none


def retry_delay_s(error: HubbubError) -> float | None:
    """Seconds a client should wait before retrying ``error``; None if it must not retry."""
    if not error.retry:
        return None
    return DEFAULT_RETRY_DELAY_S if error.retry_after_s is None else max(0.0, error.retry_after_s)


def to_status(error: HubbubError) -> grpc.Status:
    """A grpc.Status for ``error`` with ErrorInfo (reason, ``metadata["retry"]``) and, if
    any, RetryInfo and BadRequest details."""
    code = STATUS_OF[error.category]
    details: list[any_pb2.Any] = []
    info = any_pb2.Any()
    info.Pack(
        error_details_pb2.ErrorInfo(
            reason=error.reason,
            domain="hubbub",
            metadata={"retry": "true" if error.retry else "false"},
        )
    )
    details.append(info)
    delay = retry_delay_s(error)
    if delay is not None:
        retry = any_pb2.Any()
        wait = duration_pb2.Duration()
        wait.FromNanoseconds(round(delay * 1e9))
        retry.Pack(error_details_pb2.RetryInfo(retry_delay=wait))
        details.append(retry)
    if error.violations:
        bad = any_pb2.Any()
        bad.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in error.violations
                ]
            )
        )
        details.append(bad)
    status = status_pb2.Status(
        code=getattr(code_pb2, code.name), message=error.message, details=details
    )
    result: grpc.Status = rpc_status.to_status(status)
    return result
