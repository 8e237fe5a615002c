"""Transport: one server interceptor that authenticates calls and maps domain errors.

Every method of ``hubbub.v1.MessengerService`` except Register and Login needs
``authorization: Bearer <token>``; the caller's account is put in
:data:`current_account` and its session (token hash, expiry) in
:data:`current_session` for the servicer. Health and reflection pass through.

Request frames that do not decode become :class:`Undecodable` (the call ends with
INVALID_ARGUMENT, not grpc.aio's UNKNOWN with a Python exception text), and any
unexpected exception becomes INTERNAL "internal error" (traceback in the server log).
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc

from .auth import AuthService
from .errors import HubbubError, InternalError, UndecodableRequest
from .grpc_errors import to_status
from .models import Account, AuthSession

log = logging.getLogger(__name__)

SERVICE_PREFIX = "/hubbub.v1.MessengerService/"
PUBLIC_METHODS = frozenset({SERVICE_PREFIX + "Register", SERVICE_PREFIX + "Login"})

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"

if TYPE_CHECKING:
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    _Interceptor = grpc.aio.ServerInterceptor

current_account: contextvars.ContextVar[Account] = contextvars.ContextVar("current_account")
current_token: contextvars.ContextVar[str] = contextvars.ContextVar("current_token")
current_session: contextvars.ContextVar[AuthSession] = contextvars.ContextVar("current_session")
RESUME_TOKEN_KEY = "hubbub-resume-token"
PRESENCE_KEY = "hubbub-presence"  # "off": the Chat stream gets no presence events


def metadata_value(metadata: Any, key: str) -> str:
    """The first string value of metadata ``key`` ("" if absent)."""
    for name, value in metadata or ():
        if name == key and isinstance(value, str):
            return value.strip()
    return ""


@dataclass(frozen=True, slots=True)
class Undecodable:
    """Stands for a request frame that is not a valid message of the method's request type;
    ``error`` is the INVALID_ARGUMENT to end the call with."""

    error: UndecodableRequest


def decoding(method: str, deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
    """Wrap a request deserializer so that a frame it cannot parse (random bytes, invalid
    UTF-8 in a string field) yields :class:`Undecodable` instead of raising: grpc.aio
    answers a raising deserializer with UNKNOWN and the exception text."""
    name = method.rsplit("/", 1)[-1]

    def decode(raw: bytes) -> Any:
        if deserializer is None:
            return raw
        try:
            return deserializer(raw)
        except Exception as exc:
            log.debug("undecodable %s request (%d bytes): %r", name, len(raw), exc)
            return Undecodable(
                UndecodableRequest(
                    f"The {name} request could not be decoded: it is not a valid protobuf "
                    "message of the expected type, or a text field is not valid UTF-8."
                )
            )

    return decode


def bearer_token(metadata: Any) -> str | None:
    """The token of an ``authorization: Bearer <token>`` metadata entry, if any."""
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


class AuthInterceptor(_Interceptor):
    """Authenticates Hubbub calls and turns :class:`HubbubError` into statuses."""

    def __init__(self, auth: AuthService) -> None:
        self.auth = auth

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        """Wrap Hubbub handlers; leave other services (health, reflection) alone."""
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(SERVICE_PREFIX):
            return handler
        needs_auth = method not in PUBLIC_METHODS
        deserializer = decoding(method, handler.request_deserializer)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap(handler.unary_unary, needs_auth, method),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            # The stream's frames are checked by its reader (MessengerServicer._read).
            return grpc.stream_stream_rpc_method_handler(
                self._wrap(handler.stream_stream, needs_auth, method),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _wrap(self, behaviour: Any, needs_auth: bool, method: str) -> Any:
        auth = self.auth

        async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                if needs_auth:
                    token = bearer_token(context.invocation_metadata()) or ""
                    session = await auth.authenticate(token)
                    current_session.set(session)
                    current_account.set(session.account)
                    current_token.set(token)
                if isinstance(request, Undecodable):
                    raise request.error
                return await behaviour(request, context)
            except HubbubError as error:
                status = to_status(error)
                await context.abort(status.code, status.details, status.trailing_metadata)
            except grpc.aio.AbortError:
                raise  # context.abort: the status is already set
            except Exception:
                log.exception("%s failed", method)
                status = to_status(InternalError())
                await context.abort(status.code, status.details, status.trailing_metadata)

        return wrapped
