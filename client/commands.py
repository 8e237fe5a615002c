"""The one-shot `hubbub` commands (register, login, logout, who, send, listen, groups,
group, history, profile), and the server and saved login each one uses.

Each `cmd_*` coroutine takes the parsed arguments and returns the exit status, or raises
`Failure` (one line for stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from . import parsing, render
from .arguments import ENV_SERVER
from .client import DEFAULT_SERVER, Client
from .conversation import Conversation
from .errors import ErrorKind, HubbubError
from .events import (
    ConnectionLost,
    DeliveryReceipt,
    EventRejected,
    GroupInfo,
    GroupUpdate,
    IncomingMessage,
    Reconnected,
    SendConfirmed,
    UserInfo,
)
from .failures import Failure, UsageFailure, _explain
from .json_output import group_json, history_json, message_json, user_json
from .session_store import (
    SavedSession,
    SessionFileError,
    delete_session,
    load_session,
    save_session,
    session_path,
)
from .target import ServerTarget, TargetError, parse_target

# --- helpers ------------------------------------------------------------------------------


def _explicit_server(args: argparse.Namespace) -> str | None:
    """The server named by --server or $HUBBUB_SERVER, None if neither is set."""
    explicit: str | None = getattr(args, "server", None)
    return explicit or os.environ.get(ENV_SERVER) or None


def _target(args: argparse.Namespace, saved: SavedSession | None = None) -> ServerTarget:
    """Where to connect, with the TLS flags applied; refuses plaintext credentials to
    another machine (UsageFailure) unless --insecure.

    With a `saved` login the target must be the one the token came from (the same
    transport and a subset of its addresses); anything else is a Failure, and the token
    is never sent.
    """
    tls, ca_file = bool(getattr(args, "tls", False)), getattr(args, "ca_file", "") or ""
    named = _explicit_server(args)
    try:
        if named is not None:
            target = parse_target(named, tls=tls, ca_file=ca_file)
        elif saved is not None:
            target = saved.target().with_tls(tls, ca_file)
        else:
            target = parse_target(DEFAULT_SERVER, tls=tls, ca_file=ca_file)
    except TargetError as exc:
        raise UsageFailure(f"hubbub: {exc}") from None
    if saved is not None and not target.may_use_session_of(saved.target()):
        raise Failure(
            f"The saved login of {saved.username} is for {saved.target().key}, not "
            f"{target.key}; run 'hubbub --server {target.key} login USER' to use that server."
        )
    if not target.tls and not target.is_loopback() and not getattr(args, "insecure", False):
        raise UsageFailure(
            f"hubbub: refusing to send a password or token in plaintext to {target.key}; "
            "use --tls (or --ca-file PEM, or a grpcs:// address), or --insecure on a "
            "trusted network."
        )
    return target


def _saved_session() -> SavedSession:
    """The saved login, usable now; Failure (one line) if there is none or it expired."""
    try:
        saved = load_session()
    except SessionFileError as exc:
        raise Failure(f"Cannot use the saved login ({exc}); run 'hubbub login USER'.") from None
    if saved is None:
        raise Failure("Not logged in; run 'hubbub login USER' first.")
    if saved.expired():
        raise Failure("The saved login has expired; run 'hubbub login USER' again.")
    return saved


async def _connect(target: str | ServerTarget, token: str | None = None) -> Client:
    return await Client.connect(target, token=token)


# --- commands -----------------------------------------------------------------------------


async def cmd_register(args: argparse.Namespace, password: str) -> int:
    """`hubbub register USER`: create the account."""
    async with await _connect(_target(args)) as client:
        try:
            user = await client.register(args.username, password, args.display_name)
        except HubbubError as exc:
            if exc.kind is ErrorKind.ALREADY_EXISTS:
                raise Failure(
                    f"Cannot register {render.shown(args.username)}: "
                    "that username is already in use."
                ) from None
            detail = "; ".join(v.description for v in exc.field_violations) or exc.message
            raise Failure(
                f"Cannot register {render.shown(args.username)}: {render.shown(detail)}"
            ) from None
    print(f"Registered {render.shown(user.username or args.username)}.")
    return 0


async def cmd_login(args: argparse.Namespace, password: str) -> int:
    """`hubbub login USER`: log in and save the session file."""
    target = _target(args)
    async with await _connect(target) as client:
        try:
            result = await client.login(args.username, password)
        except HubbubError as exc:
            if exc.kind is ErrorKind.UNAUTHENTICATED:
                raise Failure("Login failed: wrong username or password.") from None
            raise Failure(f"Login failed: {render.shown(exc.message)}") from None
    username = result.user.username or args.username
    try:
        save_session(
            SavedSession(target.key, username, result.token, result.expire_time, target.ca_file)
        )
    except OSError as exc:
        raise Failure(f"Cannot save the login in {session_path()}: {exc.strerror}.") from None
    print(f"Logged in as {render.shown(username)}.")
    return 0


async def cmd_logout(args: argparse.Namespace) -> int:
    """`hubbub logout`: revoke the token and delete the session file."""
    try:
        saved = load_session()
    except SessionFileError:
        delete_session()
        print("Logged out.")
        return 0
    if saved is None:
        raise Failure("Not logged in.")
    try:
        async with await _connect(_target(args, saved), saved.token) as client:
            await client.logout()
    except HubbubError as exc:
        if exc.kind is not ErrorKind.UNAUTHENTICATED:
            delete_session()
            raise Failure(
                "Forgot the saved login, but the server did not revoke it: "
                f"{render.shown(exc.message)}"
            ) from None
    delete_session()
    print("Logged out.")
    return 0


async def cmd_who(args: argparse.Namespace) -> int:
    """`hubbub who [--all] [--json]`: list users."""
    saved = _saved_session()
    async with await _connect(_target(args, saved), saved.token) as client:
        try:
            users = await client.list_users(online_only=not args.all)
        except HubbubError as exc:
            raise Failure(_explain(exc)) from None
    if args.json:
        print(json.dumps([user_json(u) for u in users]))
    elif args.all:
        print(f"There are {len(users)} users:")
        for u in users:
            print(f"{render.shown(u.username)} ({'online' if u.online else 'offline'})")
    else:
        print(render.who_header(len(users)))
        for u in users:
            print(render.shown(u.username))
    return 0


async def cmd_send(args: argparse.Namespace) -> int:
    """`hubbub send USER|#GROUP TEXT` / `send --random TEXT`: send one message with the
    unary SendMessage RPC (no Chat stream: it works while the user's chat is open and
    does not flap their presence) and wait until it is stored."""
    saved = _saved_session()
    body = " ".join(args.text)
    recipient: str = args.recipient
    group = recipient[1:] if recipient.startswith("#") else ""
    async with await _connect(_target(args, saved), saved.token) as client:
        try:
            result = await client.send_message(
                recipient, body, args.client_id, group=group, random_recipient=args.random
            )
        except HubbubError as exc:
            if exc.kind is not ErrorKind.UNIMPLEMENTED:
                raise _send_failure(exc, group) from None
            result = await _send_over_chat(client, args, saved.username, body, group)
    print(render.message_sent_to(result.recipient) if args.random else render.MESSAGE_SENT)
    return 0


async def _send_over_chat(
    client: Client, args: argparse.Namespace, username: str, body: str, group: str
) -> SendConfirmed:
    """Send on a Chat stream, for servers older than the unary SendMessage RPC."""
    try:
        chat = await client.open_chat()
    except HubbubError as exc:
        if exc.kind is ErrorKind.ALREADY_EXISTS:
            raise Failure(
                f"Cannot send: {username} is connected in another client; send from there."
            ) from None
        raise _send_failure(exc, group) from None
    cid = chat.send(args.recipient, body, args.client_id, group=group, random_recipient=args.random)
    try:
        async with asyncio.timeout(30):
            async for event in chat:
                if isinstance(event, SendConfirmed) and event.client_id == cid:
                    return event
                if isinstance(event, EventRejected) and event.client_id in (cid, ""):
                    raise _send_failure(
                        HubbubError(
                            event.kind, event.message, event.field_violations, reason=event.reason
                        ),
                        group,
                    )
    except TimeoutError:
        raise Failure("The server did not confirm the message in time.") from None
    except HubbubError as exc:
        raise Failure(_explain(exc)) from None
    finally:
        await chat.aclose(2.0)
    raise Failure("The server closed the connection before confirming the message.")


def _send_failure(exc: HubbubError, group: str = "") -> Failure:
    """The one line for a refused one-shot send."""
    if exc.kind in (ErrorKind.UNAVAILABLE, ErrorKind.UNAUTHENTICATED):
        return Failure(_explain(exc))
    if exc.kind is ErrorKind.RESOURCE_EXHAUSTED:
        return Failure("Cannot send: the server is busy; try again in a moment.")
    fields = exc.fields()
    if "send.body" in fields or "body" in fields:
        return Failure("Cannot send: the message is empty or too long.")
    line = render.rejection_text(exc.reason, exc.kind.value, fields, group)
    if line in (render.HEADER_ERROR, render.BODY_ERROR):
        return Failure(f"Cannot send: {render.shown(exc.detail())}")
    return Failure(line)


async def cmd_listen(args: argparse.Namespace) -> int:
    """`hubbub listen [--json] [--count N]`: print and acknowledge incoming messages."""
    saved = _saved_session()
    if args.count is not None and args.count < 1:
        raise Failure("--count must be at least 1.")
    async with await _connect(_target(args, saved), saved.token) as client:
        client.username = saved.username
        conversation = Conversation(client)
        try:
            await conversation.start()
        except HubbubError as exc:
            if exc.kind is ErrorKind.ALREADY_EXISTS:
                raise Failure(
                    f"Cannot listen: {saved.username} is connected in another client."
                ) from None
            if exc.kind is ErrorKind.RESOURCE_EXHAUSTED:
                raise Failure("Cannot listen: the server is full.") from None
            raise Failure(_explain(exc)) from None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        printer = asyncio.create_task(_print_messages(conversation, args.json, args.count))
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({printer, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        printer.cancel()
        failure: str | None = None
        try:
            await printer
        except asyncio.CancelledError:
            pass
        except HubbubError as exc:
            failure = _explain(exc)
        await conversation.close()
    if failure is not None:
        raise Failure(failure)
    return 0


async def _print_messages(conversation: Conversation, as_json: bool, count: int | None) -> None:
    shown = 0
    async for event in conversation:
        if isinstance(event, IncomingMessage):
            if as_json:
                line = json.dumps(message_json(event), ensure_ascii=False)
            else:
                line = render.incoming_line(
                    event.sender, event.body, event.send_time, group=event.group
                )
            print(line, flush=True)
            conversation.ack(event.sequence)
            shown += 1
            if count is not None and shown >= count:
                return
        elif isinstance(event, DeliveryReceipt | GroupUpdate):
            # Inbox entries that are not messages: acknowledged so they are not replayed.
            conversation.ack(event.sequence)
        elif isinstance(event, ConnectionLost):
            print(render.CONNECTION_LOST, file=sys.stderr, flush=True)
        elif isinstance(event, Reconnected):
            print(render.RECONNECTED, file=sys.stderr, flush=True)


async def _with_client(
    args: argparse.Namespace, call: Callable[[Client], Coroutine[Any, Any, Any]]
) -> Any:
    """Run `call(client)` with the saved login (HubbubError passes through)."""
    saved = _saved_session()
    async with await _connect(_target(args, saved), saved.token) as client:
        client.username = saved.username
        return await call(client)


def _group_failure(name: str, exc: HubbubError) -> Failure:
    if exc.kind in (ErrorKind.UNAVAILABLE, ErrorKind.UNAUTHENTICATED):
        return Failure(_explain(exc))
    return Failure(render.group_error_line(exc.reason, exc.kind.value, name, exc.detail()))


async def cmd_groups(args: argparse.Namespace) -> int:
    """`hubbub groups [--json]`: list my groups with their members."""
    try:
        groups: list[GroupInfo] = await _with_client(args, lambda c: c.list_groups())
    except HubbubError as exc:
        raise Failure(_explain(exc)) from None
    if args.json:
        print(json.dumps([group_json(g) for g in groups], ensure_ascii=False))
        return 0
    print(render.groups_header(len(groups)))
    for group in groups:
        print(render.group_listing(group.name, group.members))
    return 0


async def cmd_group(args: argparse.Namespace) -> int:
    """`hubbub group create|add|leave NAME [USER…]`."""
    name: str = args.name.removeprefix("#")
    action: str = args.group_command
    try:
        if action == "create":
            group = await _with_client(args, lambda c: c.create_group(name, args.members))
            print(render.group_created(group.name, group.members))
        elif action == "add":
            group = await _with_client(args, lambda c: c.add_group_members(name, args.members))
            print(
                render.members_added(
                    group.name, render.canonical_members(args.members, group.members)
                )
            )
        else:
            await _with_client(args, lambda c: c.leave_group(name))
            print(render.group_left(name))
    except HubbubError as exc:
        raise _group_failure(name, exc) from None
    return 0


async def cmd_history(args: argparse.Namespace) -> int:
    """`hubbub history @USER|#GROUP [-n N] [--json]`: the last N messages, oldest first."""
    target = parsing.parse_history_target(args.target)
    if target is None:
        raise Failure("Name a conversation: @USER or #GROUP.")
    if not 1 <= args.count <= render.HISTORY_MAX:
        raise Failure(f"-n must be 1 to {render.HISTORY_MAX}.")
    username, group = target
    try:
        messages: list[IncomingMessage] = await _with_client(
            args,
            lambda c: c.recent_history(
                username=username or None, group=group or None, count=args.count
            ),
        )
    except HubbubError as exc:
        if group:
            raise _group_failure(group, exc) from None
        if exc.kind is ErrorKind.NOT_FOUND:
            raise Failure(render.user_not_found(username)) from None
        raise Failure(_explain(exc)) from None
    if args.json:
        print(json.dumps([history_json(m) for m in messages], ensure_ascii=False))
        return 0
    print(render.history_header(username, group))
    for message in messages:
        print(render.history_line(message.sender, message.body, message.send_time))
    if not messages:
        print(render.NO_MESSAGES)
    return 0


async def cmd_profile(args: argparse.Namespace, current: str, new: str) -> int:
    """`hubbub profile [--display-name NAME] [--password | --password-stdin]`."""
    try:
        user: UserInfo = await _with_client(
            args,
            lambda c: c.update_profile(
                display_name=args.display_name, new_password=new, current_password=current
            ),
        )
    except HubbubError as exc:
        if exc.reason == "AUTHENTICATION_FAILED":
            raise Failure(render.shown(exc.message)) from None
        if exc.kind is ErrorKind.INVALID_ARGUMENT:
            raise Failure(f"Cannot change the profile: {render.shown(exc.detail())}") from None
        raise Failure(_explain(exc)) from None
    if args.display_name is not None:
        print(render.display_name_changed(user.display_name or args.display_name))
    if new:
        print(render.PASSWORD_CHANGED)
    return 0
