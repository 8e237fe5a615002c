"""`Client`: a connection to a Hubbub service (one address at a time) and its session token.

It makes the unary calls (register, login, users, groups, history, SendMessage) and
opens `Chat` streams. A `Client` takes a `ServerTarget` (see `hubbub.client.target`)
or an address text: "host:port", a comma list of nodes, or `grpcs://host:port` for TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Final, Self

import grpc
import grpc.aio

from hubbub.v1 import messenger_pb2 as pb
from hubbub.v1 import messenger_pb2_grpc as pb_grpc

from .chat import Chat, _Requests, new_client_id
from .errors import ErrorKind, HubbubError, _error_from_rpc, unreachable
from .events import (
    GroupInfo,
    HistoryPage,
    IncomingMessage,
    LoginResult,
    SendConfirmed,
    UserInfo,
    UserPage,
    _confirmed,
    _time,
)
from .target import ServerTarget, parse_target

DEFAULT_SERVER: Final = "127.0.0.1:50051"

#: The largest page ListHistory serves.
MAX_HISTORY_PAGE: Final = 500

#: The page size `list_users` asks for (the server's maximum, AIP-158).
USERS_PAGE_SIZE: Final = 1000

#: Metadata key of the Chat call that proves a reconnect is the same client (the
#: resume_token of its last Welcome), so the server hands it the stale stream at once.
RESUME_TOKEN_KEY: Final = "hubbub-resume-token"

#: Channel options: keepalive so a dead peer is noticed in well under a minute, and a
#: short reconnect backoff inside grpc (our own backoff sits on top of it).
CHANNEL_OPTIONS: Final[list[tuple[str, int]]] = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 4_000),
    # gRPC core only drops a connection whose keepalive ping went unanswered after its
    # HTTP/2 ping timeout (default 60 s), so the two must be set together.
    ("grpc.http2.ping_timeout_ms", 4_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]


def _channel_credentials(target: ServerTarget) -> grpc.ChannelCredentials | None:
    """TLS credentials for `target` (its CA file, or the system roots), None for plaintext.

    Raises HubbubError(INVALID_ARGUMENT) if the CA file cannot be read.
    """
    if not target.tls:
        return None
    roots: bytes | None = None
    if target.ca_file:
        try:
            with open(target.ca_file, "rb") as fh:
                roots = fh.read()
        except OSError as exc:
            raise HubbubError(
                ErrorKind.INVALID_ARGUMENT,
                f"Cannot read the CA file {target.ca_file}: {exc.strerror or exc}.",
            ) from None
    return grpc.ssl_channel_credentials(root_certificates=roots)


class Client:
    """A connection to a Hubbub service and, after login, a session token.

    `target` is a `ServerTarget` or an address text ("host:port", a comma list of the
    nodes of one cluster, `grpcs://host:port` for TLS); `tls` and `ca_file` (a PEM file
    of trusted roots; the system roots if "") switch TLS on for a text target. The
    client talks to one address at a time (`address`); `reset_channel()` moves on to the
    next one, so a `Conversation` fails over when a node dies.

    Every method raises HubbubError on failure (ErrorKind.UNAVAILABLE when the
    server cannot be reached). Use `await Client.connect(target)` to fail early when
    the server is down, and `async with` (or `close()`) to release the channel. A CA
    file that cannot be read raises HubbubError(INVALID_ARGUMENT) at construction.
    """

    def __init__(
        self,
        target: str | ServerTarget = DEFAULT_SERVER,
        *,
        token: str | None = None,
        tls: bool = False,
        ca_file: str = "",
    ) -> None:
        if isinstance(target, ServerTarget):
            self.target = target.with_tls(tls, ca_file)
        else:
            self.target = parse_target(target, tls=tls, ca_file=ca_file)
        self.token = token
        self.username: str | None = None
        self._index = 0
        self._credentials = _channel_credentials(self.target)
        self._channel = self._new_channel()
        self._stub = pb_grpc.MessengerServiceStub(self._channel)

    @property
    def address(self) -> str:
        """The "host:port" this client talks to now."""
        return self.target.addresses[self._index]

    @property
    def where(self) -> str:
        """`address` as shown in messages: "grpcs://host:port" when TLS is on."""
        return f"grpcs://{self.address}" if self.target.tls else self.address

    def _new_channel(self) -> grpc.aio.Channel:
        if self._credentials is None:
            return grpc.aio.insecure_channel(self.address, options=CHANNEL_OPTIONS)
        return grpc.aio.secure_channel(self.address, self._credentials, options=CHANNEL_OPTIONS)

    @classmethod
    async def connect(
        cls,
        target: str | ServerTarget = DEFAULT_SERVER,
        *,
        token: str | None = None,
        within: float = 5.0,
        tls: bool = False,
        ca_file: str = "",
    ) -> Client:
        """Create a client and wait up to `within` seconds per address for a server to answer.

        The addresses are tried in turn; the client keeps the first that answers.
        Raises HubbubError(ErrorKind.UNAVAILABLE) if none can be reached.
        """
        client = cls(target, token=token, tls=tls, ca_file=ca_file)
        try:
            for attempt in range(len(client.target.addresses)):
                if attempt:
                    await client.reset_channel()
                last = attempt == len(client.target.addresses) - 1
                try:
                    await client.wait_ready(within, fail_fast=not last)
                except HubbubError:
                    if last:
                        raise
                    continue
                break
        except BaseException:
            await client.close()
            raise
        return client

    async def wait_ready(self, within: float = 5.0, *, fail_fast: bool = False) -> None:
        """Wait until the channel is connected; HubbubError(UNAVAILABLE) after `within` s,
        or as soon as a connection attempt fails if `fail_fast` (to try another address)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        state = self._channel.get_state(try_to_connect=True)
        while state is not grpc.ChannelConnectivity.READY:
            remaining = deadline - loop.time()
            failed = fail_fast and state is grpc.ChannelConnectivity.TRANSIENT_FAILURE
            if failed or remaining <= 0:
                raise HubbubError(ErrorKind.UNAVAILABLE, unreachable(self.where))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._channel.wait_for_state_change(state), remaining)
            state = self._channel.get_state(try_to_connect=True)

    async def reset_channel(self) -> None:
        """Replace the channel with a fresh one to the NEXT address (round robin; the
        same one if there is only one). Used before reconnecting."""
        old = self._channel
        self._index = (self._index + 1) % len(self.target.addresses)
        self._channel = self._new_channel()
        self._stub = pb_grpc.MessengerServiceStub(self._channel)
        with contextlib.suppress(Exception):
            await old.close(None)

    async def close(self) -> None:
        """Close the channel; calls in progress are cancelled."""
        with contextlib.suppress(Exception):
            await self._channel.close(None)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        if not self.token:
            raise HubbubError(ErrorKind.UNAUTHENTICATED, "Not logged in.")
        return (("authorization", f"Bearer {self.token}"),)

    async def register(self, username: str, password: str, display_name: str = "") -> UserInfo:
        """Create an account; returns it.

        Errors: INVALID_ARGUMENT (bad name, password or display name; see
        `field_violations`), ALREADY_EXISTS (name taken).
        """
        request = pb.RegisterRequest(
            username=username, password=password, display_name=display_name
        )
        try:
            response = await self._stub.Register(request, timeout=30)
        except grpc.RpcError as exc:
            raise _error_from_rpc(exc, self.where) from None
        return UserInfo.from_pb(response.user)

    async def login(self, username: str, password: str) -> LoginResult:
        """Log in and keep the token for later calls.

        Errors: UNAUTHENTICATED (unknown user or wrong password), RESOURCE_EXHAUSTED
        (too many failed attempts), INVALID_ARGUMENT.
        """
        try:
            response = await self._stub.Login(
                pb.LoginRequest(username=username, password=password), timeout=30
            )
        except grpc.RpcError as exc:
            raise _error_from_rpc(exc, self.where) from None
        self.token = response.token
        user = UserInfo.from_pb(response.user)
        self.username = user.username or username
        return LoginResult(response.token, _time(response.expire_time), user)

    async def logout(self) -> None:
        """Revoke the current token (and forget it). Errors: UNAUTHENTICATED."""
        metadata = self._metadata()
        try:
            await self._stub.Logout(pb.LogoutRequest(), metadata=metadata, timeout=10)
        except grpc.RpcError as exc:
            raise _error_from_rpc(exc, self.where) from None
        finally:
            self.token = None

    async def list_users_page(
        self, online_only: bool = False, page_size: int = 0, page_token: str = ""
    ) -> UserPage:
        """One page of users sorted by username (AIP-158).

        `page_size` is 1-1000 (0: the server's default of 100); pass the previous page's
        `next_page_token` for the next page, with the same `online_only`.
        Errors: UNAUTHENTICATED, INVALID_ARGUMENT (bad page size or token).
        """
        request = pb.ListUsersRequest(
            online_only=online_only, page_size=page_size, page_token=page_token
        )
        response = await self._unary(self._stub.ListUsers, request)
        return UserPage(
            tuple(UserInfo.from_pb(u) for u in response.users), response.next_page_token
        )

    async def list_users(
        self, online_only: bool = False, page_size: int = USERS_PAGE_SIZE
    ) -> list[UserInfo]:
        """Every user (or those online), sorted by username, paging until the last page.

        Errors: UNAUTHENTICATED; INTERNAL if the server hands out the same page token twice
        (a loop that would never end).
        """
        users: list[UserInfo] = []
        token = ""
        seen: set[str] = set()
        while True:
            page = await self.list_users_page(online_only, page_size, token)
            users.extend(page.users)
            token = page.next_page_token
            if not token:
                return users
            if token in seen:
                raise HubbubError(ErrorKind.INTERNAL, "The server repeated a page of users.")
            seen.add(token)

    async def _unary(self, method: Any, request: Any, deadline: float = 10) -> Any:
        """Call one authenticated unary RPC (`deadline` seconds); errors become HubbubError."""
        metadata = self._metadata()
        try:
            return await method(request, metadata=metadata, timeout=deadline)
        except grpc.RpcError as exc:
            raise _error_from_rpc(exc, self.where) from None

    async def update_profile(
        self,
        display_name: str | None = None,
        new_password: str = "",
        current_password: str = "",
    ) -> UserInfo:
        """Change my display name (None keeps it) and/or password ("" keeps it); returns me.

        A new password needs `current_password` and logs out every other session of
        mine (this client's token stays valid). Errors: INVALID_ARGUMENT (bad display
        name or password, see `field_violations`), UNAUTHENTICATED (wrong current password).
        """
        request = pb.UpdateProfileRequest(
            new_password=new_password, current_password=current_password
        )
        if display_name is not None:
            request.display_name = display_name
        response = await self._unary(self._stub.UpdateProfile, request, deadline=30)
        return UserInfo.from_pb(response.user)

    async def create_group(self, name: str, members: Iterable[str] = ()) -> GroupInfo:
        """Create group `name` (a leading '#' is ignored) with me and `members`; returns it.

        Errors: INVALID_ARGUMENT (bad name), ALREADY_EXISTS (name taken, reason
        GROUP_NAME_TAKEN), NOT_FOUND (a member does not exist; the message names it).
        """
        request = pb.CreateGroupRequest(name=name, members=list(members))
        response = await self._unary(self._stub.CreateGroup, request)
        return GroupInfo.from_pb(response.group)

    async def add_group_members(self, group: str, members: Iterable[str]) -> GroupInfo:
        """Add `members` to `group` (I must belong to it); returns the group after the change.

        Errors: NOT_FOUND (reason GROUP_NOT_FOUND or USER_NOT_FOUND), PERMISSION_DENIED
        (reason NOT_A_MEMBER), INVALID_ARGUMENT (no members named).
        """
        request = pb.AddGroupMembersRequest(group=group, members=list(members))
        response = await self._unary(self._stub.AddGroupMembers, request)
        return GroupInfo.from_pb(response.group)

    async def leave_group(self, group: str) -> None:
        """Leave `group`. Errors: NOT_FOUND (no such group), PERMISSION_DENIED (not a member)."""
        await self._unary(self._stub.LeaveGroup, pb.LeaveGroupRequest(group=group))

    async def list_groups(self) -> list[GroupInfo]:
        """The groups I belong to, sorted by name, with their members."""
        response = await self._unary(self._stub.ListGroups, pb.ListGroupsRequest())
        return [GroupInfo.from_pb(g) for g in response.groups]

    async def send_message(
        self,
        recipient: str,
        body: str,
        client_id: str | None = None,
        *,
        group: str = "",
        random_recipient: bool = False,
    ) -> SendConfirmed:
        """Store one message with the unary SendMessage RPC (no Chat stream, so it works
        while my chat is open elsewhere); returns the stored result.

        Destination as in `Chat.send`. Errors: INVALID_ARGUMENT (bad body or client id,
        see `field_violations`), NOT_FOUND (no such user or group), PERMISSION_DENIED (not
        a member of the group), FAILED_PRECONDITION (nobody else online for a random send,
        or the client id was used for another message), UNAUTHENTICATED.
        """
        request = pb.SendMessageRequest(client_id=client_id or new_client_id(), body=body)
        if random_recipient:
            request.random_recipient = True
        elif group:
            request.group = group
        else:
            request.recipient = recipient
        response = await self._unary(self._stub.SendMessage, request, deadline=30)
        return _confirmed(response.result)

    async def list_history(
        self,
        *,
        username: str | None = None,
        group: str | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> HistoryPage:
        """One page of my direct messages with `username`, or of `group`, newest first.

        Exactly one of `username` and `group` must be given. `page_size` is 1-500 (0: the
        server's default of 50); pass the previous page's `next_page_token` for older
        messages. Errors: NOT_FOUND (no such user or group), PERMISSION_DENIED (not a
        member of the group), INVALID_ARGUMENT (bad page size or token).
        """
        if (username is None) == (group is None):
            raise ValueError("list_history needs exactly one of username and group")
        request = pb.ListHistoryRequest(page_size=page_size, page_token=page_token)
        if username is not None:
            request.username = username
        else:
            assert group is not None
            request.group = group
        response = await self._unary(self._stub.ListHistory, request)
        return HistoryPage(
            tuple(IncomingMessage.from_pb(m) for m in response.messages),
            response.next_page_token,
        )

    async def recent_history(
        self, *, username: str | None = None, group: str | None = None, count: int = 20
    ) -> list[IncomingMessage]:
        """The last `count` messages of a conversation, OLDEST first (pages as needed).

        Same arguments and errors as `list_history`.
        """
        newest_first: list[IncomingMessage] = []
        token = ""
        while len(newest_first) < count:
            page = await self.list_history(
                username=username,
                group=group,
                page_size=min(count - len(newest_first), MAX_HISTORY_PAGE),
                page_token=token,
            )
            newest_first.extend(page.messages)
            token = page.next_page_token
            if not token or not page.messages:
                break
        return newest_first[:count][::-1]

    async def open_chat(self, within: float = 10.0, *, resume_token: str = "") -> Chat:
        """Open the Chat stream and wait for its Welcome (in `chat.welcome`).

        `resume_token` (the Welcome.resume_token of this client's previous stream) is sent
        as `hubbub-resume-token` metadata so that stream, if still registered, is taken
        over at once. Nothing is delivered until the caller sends a first event (normally
        `chat.resume()`). Errors: UNAUTHENTICATED, ALREADY_EXISTS (already online
        elsewhere), RESOURCE_EXHAUSTED (server full), UNAVAILABLE.
        """
        metadata = self._metadata()
        if resume_token:
            metadata = (*metadata, (RESUME_TOKEN_KEY, resume_token))
        outbox: asyncio.Queue[pb.ChatRequest | None] = asyncio.Queue()
        call = self._stub.Chat(_Requests(outbox), metadata=metadata)
        chat = Chat(call, outbox, self.where)
        await chat._first_event(within)
        return chat
