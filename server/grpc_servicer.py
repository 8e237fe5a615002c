"""Transport: the thin hubbub.v1.MessengerService servicer.

Each RPC decodes its request, calls one domain service (auth or hub) and
encodes the answer; authentication and error mapping live in
:mod:`hubbub.server.grpc_interceptor`. ``Chat`` runs a reader task that drains
the request stream into the hub while this handler writes the session's
outbox with ``context.write`` (each write bounded by ``write_timeout_s``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from hubbub.v1 import messenger_pb2 as pb
from hubbub.v1 import messenger_pb2_grpc as pb_grpc

from . import grpc_convert as convert
from .auth import AuthService
from .errors import InternalError, InvalidArgument, SlowConsumer
from .events import InMalformed, InResume
from .groups import GroupService
from .grpc_interceptor import (
    PRESENCE_KEY,
    RESUME_TOKEN_KEY,
    Undecodable,
    current_account,
    current_session,
    current_token,
    metadata_value,
)
from .history import HistoryService
from .hub import Hub
from .outbox import OutboxClosed
from .session import ChatSession
from .watchdog import WriteWatchdog

log = logging.getLogger(__name__)
Context = grpc.aio.ServicerContext[Any, Any]
CLEANUP_WAIT_S = 5.0  # longest wait for a stream's tasks to end after being cancelled
MAX_BATCH_EVENTS = 256  # most events in one ChatResponse.batch frame


class MessengerServicer(pb_grpc.MessengerServiceServicer):
    """hubbub.v1.MessengerService over :class:`AuthService` and :class:`Hub`.

    Args:
        write_timeout_s: longest wait for one stream write (seconds) before the
            client is disconnected as a slow consumer.
    """

    def __init__(
        self,
        auth: AuthService,
        hub: Hub,
        groups: GroupService,
        history: HistoryService,
        write_timeout_s: float = 30.0,
    ) -> None:
        self.auth = auth
        self.hub = hub
        self.groups = groups
        self.history = history
        self.write_timeout_s = write_timeout_s
        self._cleanups: set[asyncio.Task[None]] = set()

    async def Register(self, request: pb.RegisterRequest, context: Context) -> pb.RegisterResponse:
        """Create an account."""
        account = await self.auth.register(
            request.username, request.password, request.display_name, peer=context.peer()
        )
        return pb.RegisterResponse(user=convert.user(await self.hub.user_view(account)))

    async def Login(self, request: pb.LoginRequest, context: Context) -> pb.LoginResponse:
        """Check credentials and return a session token."""
        result = await self.auth.login(request.username, request.password, peer=context.peer())
        return pb.LoginResponse(
            token=result.token,
            expire_time=convert.timestamp(result.expires_at),
            user=convert.user(await self.hub.user_view(result.account)),
        )

    async def Logout(self, request: pb.LogoutRequest, context: Context) -> pb.LogoutResponse:
        """Revoke the caller's token; its Chat stream ends on every node."""
        await self.hub.logout(current_account.get().username, self.auth.logout(current_token.get()))
        return pb.LogoutResponse()

    async def ListUsers(
        self, request: pb.ListUsersRequest, context: Context
    ) -> pb.ListUsersResponse:
        """List users with presence, one page at a time (AIP-158)."""
        page = await self.hub.list_users(request.online_only, request.page_size, request.page_token)
        return pb.ListUsersResponse(
            users=[convert.user(u) for u in page.users], next_page_token=page.next_page_token
        )

    async def UpdateProfile(
        self, request: pb.UpdateProfileRequest, context: Context
    ) -> pb.UpdateProfileResponse:
        """Change display name and/or password."""
        account = await self.hub.update_account(
            self.auth.update_profile(
                current_account.get(),
                current_token.get(),
                display_name=request.display_name if request.HasField("display_name") else None,
                new_password=request.new_password,
                current_password=request.current_password,
            )
        )
        return pb.UpdateProfileResponse(user=convert.user(await self.hub.user_view(account)))

    async def CreateGroup(
        self, request: pb.CreateGroupRequest, context: Context
    ) -> pb.CreateGroupResponse:
        """Create a group."""
        group = await self.groups.create(current_account.get(), request.name, list(request.members))
        return pb.CreateGroupResponse(group=convert.group(group))

    async def AddGroupMembers(
        self, request: pb.AddGroupMembersRequest, context: Context
    ) -> pb.AddGroupMembersResponse:
        """Add members to a group."""
        group = await self.groups.add(current_account.get(), request.group, list(request.members))
        return pb.AddGroupMembersResponse(group=convert.group(group))

    async def LeaveGroup(
        self, request: pb.LeaveGroupRequest, context: Context
    ) -> pb.LeaveGroupResponse:
        """Leave a group."""
        await self.groups.leave(current_account.get(), request.group)
        return pb.LeaveGroupResponse()

    async def ListGroups(
        self, request: pb.ListGroupsRequest, context: Context
    ) -> pb.ListGroupsResponse:
        """The caller's groups."""
        groups = await self.groups.list(current_account.get())
        return pb.ListGroupsResponse(groups=[convert.group(g) for g in groups])

    async def ListHistory(
        self, request: pb.ListHistoryRequest, context: Context
    ) -> pb.ListHistoryResponse:
        """A page of one conversation, newest first."""
        kind = request.WhichOneof("conversation")
        page = await self.history.page(
            current_account.get(),
            username=request.username if kind == "username" else None,
            group=request.group if kind == "group" else None,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListHistoryResponse(
            messages=[convert.message(m) for m in page.messages],
            next_page_token=page.next_token,
        )

    async def Chat(  # type: ignore[override]
        self, request_iterator: AsyncIterator[pb.ChatRequest | Undecodable], context: Context
    ) -> None:
        """The live session: a reader task feeds the hub while this handler writes the
        session's outbox (two tasks per stream: grpc's handler task and the reader).

        The call ends when the outbox is closed and drained, or at once when the hub
        aborts the session (slow consumer, revoked or expired session, takeover), even if
        a write is stuck on flow control: the session's abort hook cancels this handler's
        wait, and that cancellation alone is taken back (``Task.uncancel``) so the call
        ends with the session's close error. The ``hubbub-resume-token`` metadata takes
        over the user's current stream; ``hubbub-presence: off`` opts out of presence
        events.

        Raises:
            InvalidArgument: ``hubbub-presence`` is neither ``on`` nor ``off``.
        """
        metadata = context.invocation_metadata()
        presence = metadata_value(metadata, PRESENCE_KEY)
        resume_token = metadata_value(metadata, RESUME_TOKEN_KEY)
        del metadata  # not kept for the life of the stream (~0.4 KB)
        if presence not in ("", "on", "off"):
            raise InvalidArgument.for_field(PRESENCE_KEY, "must be 'on' or 'off'")
        session = await self.hub.open_session(
            current_account.get(),
            current_session.get(None),
            resume_token,
            presence=presence != "off",
        )
        del resume_token
        name = session.username
        stream = _Stream()
        handler = asyncio.current_task()
        assert handler is not None  # grpc.aio runs every handler in a task
        interrupt = _Interrupt(handler)
        reader = asyncio.create_task(
            self._read(request_iterator, session, stream), name=f"read-{name}"
        )
        session.abort_hook = interrupt
        try:
            try:
                await self._write(session, context, stream)
            except asyncio.CancelledError:
                if not (interrupt.fired and handler.uncancel() == 0):
                    raise  # cancelled by grpc (the client went away), not only by the hub
        finally:
            session.abort_hook = None
            cleanup = asyncio.create_task(self._end(session, (reader,)), name=f"end-{name}")
            self._cleanups.add(cleanup)
            cleanup.add_done_callback(self._cleanups.discard)
            await asyncio.shield(cleanup)  # a second cancel cannot interrupt the cleanup
        if session.close_error is not None:
            raise session.close_error

    async def _end(self, session: ChatSession, tasks: tuple[asyncio.Task[Any], ...]) -> None:
        """Stop a stream's tasks and release its session, whatever await they are in.

        The outbox is closed first, so a replay waiting for room returns at once;
        then the tasks are cancelled and awaited (bounded: a task
        that swallowed its cancellation is logged, not waited for forever).
        """
        session.outbox.close(drain=False)
        for task in tasks:
            task.cancel()
        _, pending = await asyncio.wait(tasks, timeout=CLEANUP_WAIT_S)
        if pending:
            log.warning(
                "stream of %s: %s did not stop within %.0f s",
                session.username,
                ", ".join(t.get_name() for t in pending),
                CLEANUP_WAIT_S,
            )
        await self.hub.close_session(session)

    async def SendMessage(
        self, request: pb.SendMessageRequest, context: Context
    ) -> pb.SendMessageResponse:
        """Store one message without a stream (same rules and result as a Chat send)."""
        event = convert.send_event(request)
        if isinstance(event, InMalformed):
            raise event.error
        receipt = await self.hub.send(current_account.get(), event)
        return pb.SendMessageResponse(result=convert.send_result(receipt))

    async def _read(
        self,
        requests: AsyncIterator[pb.ChatRequest | Undecodable],
        session: ChatSession,
        stream: _Stream,
    ) -> None:
        """Feed client events to the hub, the events of a ``batch`` frame one by one in
        order (each its own request index). A Resume with ``batching`` lets the writer
        batch from then on. An undecodable frame ends the call with INVALID_ARGUMENT, an
        unexpected failure with INTERNAL (both through the session's close error, mapped
        by the interceptor); a broken call just ends the writer."""
        iterator = aiter(requests)
        try:
            while True:
                try:
                    request = await anext(iterator)
                except StopAsyncIteration:
                    break
                except Exception as exc:  # the call broke (peer gone): end the writer too
                    log.debug("reader of %s ended: %r", session.username, exc)
                    session.outbox.close(drain=False)
                    return
                if isinstance(request, Undecodable):
                    session.fail(request.error)
                    return
                for event in convert.client_events(request):
                    if isinstance(event, InResume) and event.batching:
                        stream.batching = True
                    await self.hub.handle(session, event)
            await self.hub.finish(session)  # half-close: answer, deliver, end with OK
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("chat session of %s failed", session.username)
            session.fail(InternalError())

    async def _write(self, session: ChatSession, context: Context, stream: _Stream) -> None:
        """Write the session's outbox until it closes. Once the stream negotiated
        batching, every event already queued (at most ``MAX_BATCH_EVENTS``) goes out
        in one frame (:func:`convert.server_frames`); it never waits to fill a batch.
        A write stuck over ``write_timeout_s`` fails the session (its abort then cancels
        this task): one watchdog timer per stream, not one per write."""
        outbox = session.outbox
        written = self.hub.metrics.events_written
        watchdog = WriteWatchdog(self.write_timeout_s, lambda: self._write_timed_out(session))
        try:
            while True:
                try:
                    events = await outbox.take(MAX_BATCH_EVENTS if stream.batching else 1)
                except OutboxClosed:
                    return
                for frame in convert.server_frames(events):
                    watchdog.started()
                    await context.write(frame)
                    watchdog.done()
                written.inc(len(events))
        finally:
            watchdog.cancel()

    def _write_timed_out(self, session: ChatSession) -> None:
        session.fail(
            SlowConsumer(
                "Disconnected: a write to this client took longer than "
                f"{self.write_timeout_s:g} s. Stored messages will be delivered on reconnect."
            )
        )


class _Stream:
    """What one Chat stream negotiated: ``batching`` once a Resume asked for it."""

    __slots__ = ("batching",)

    def __init__(self) -> None:
        self.batching = False


class _Interrupt:
    """The abort hook of one Chat call (:attr:`ChatSession.abort_hook`): cancels the
    handler's current wait (a write stuck on flow control, or the outbox), unless the
    handler itself is the caller (its writer then sees the closed outbox on its own)."""

    __slots__ = ("fired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.fired = False

    def __call__(self) -> None:
        if asyncio.current_task() is not self.task:
            self.fired = True
            self.task.cancel()
