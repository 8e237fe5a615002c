"""Transport: the one place that maps domain errors to gRPC statuses.

Field violations travel as ``google.rpc.BadRequest`` in the
``grpc-status-details-bin`` trailer (AIP-193), via grpcio-status.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
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
}


def to_status(error: HubbubError) -> grpc.Status:
    """A grpc.Status for ``error`` with ErrorInfo and, if any, BadRequest details."""
    code = STATUS_OF[error.category]
    details: list[any_pb2.Any] = []
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=error.reason, domain="hubbub"))
    details.append(info)
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
