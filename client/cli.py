"""`hubbub`: the command line. No subcommand (or `chat`) runs the interactive chat;
`register`, `login`, `logout`, `who`, `send` and `listen` are one-shots for scripts.

Exit status: 0 on success, 1 on a failure (one line on stderr), 2 on a usage
error, 130 when interrupted by Ctrl-C outside a command that expects it.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC
from typing import Any, NoReturn, TextIO

from . import render
from .api import (
    DEFAULT_SERVER,
    Client,
    ConnectionLost,
    Conversation,
    DeliveryReceipt,
    ErrorKind,
    EventRejected,
    GroupUpdate,
    HubbubError,
    IncomingMessage,
    Reconnected,
    SendConfirmed,
    UserInfo,
)
from .session_store import (
    SavedSession,
    SessionFileError,
    delete_session,
    load_session,
    save_session,
    session_path,
)

ENV_SERVER = "HUBBUB_SERVER"


class Failure(Exception):
    """A command failed; `str(exc)` is the one line for stderr."""


# --- argument parsing ---------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line on stderr (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The full `hubbub` argument parser (every command has --help)."""
    parser = _Parser(
        prog="hubbub",
        description="Hubbub messenger client. Without a command, starts the interactive chat.",
        epilog=f"The server defaults to ${ENV_SERVER} or {DEFAULT_SERVER}.",
    )
    parser.add_argument(
        "--server",
        metavar="HOST:PORT",
        default=None,
        help=f"server address (default: ${ENV_SERVER} or {DEFAULT_SERVER})",
    )
    common = _Parser(add_help=False)
    common.add_argument(
        "--server",
        metavar="HOST:PORT",
        default=argparse.SUPPRESS,
        help=f"server address (default: ${ENV_SERVER}, the saved login's, or {DEFAULT_SERVER})",
    )
    pw = _Parser(add_help=False)
    pw.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin instead of asking",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    sub.add_parser(
        "chat", parents=[common], help="interactive chat (the default)",
        description="Log in and chat: @user text sends, !who lists who is online, !quit leaves.",
    )  # fmt: skip
    p = sub.add_parser(
        "register", parents=[common, pw], help="create an account",
        description="Create an account. The password is asked twice (no echo).",
    )  # fmt: skip
    p.add_argument("username", metavar="USER")
    p.add_argument("--display-name", metavar="NAME", default="", help="name shown to others")
    p = sub.add_parser(
        "login", parents=[common, pw], help="log in and save the session",
        description=f"Log in and save the session token (mode 0600) in {session_path()}.",
    )  # fmt: skip
    p.add_argument("username", metavar="USER")
    sub.add_parser(
        "logout", parents=[common], help="revoke and forget the saved session",
        description="Revoke the saved session token on the server and delete it locally.",
    )  # fmt: skip
    p = sub.add_parser(
        "who", parents=[common], help="list online users",
        description="List the users online now (or all users with --all).",
    )  # fmt: skip
    p.add_argument("--all", action="store_true", help="list every account, online or not")
    p.add_argument("--json", action="store_true", help="print a JSON array of users")
    p = sub.add_parser(
        "send", parents=[common], help="send one direct message",
        description="Send TEXT to USER using the saved session; exits when the server stored it.",
    )  # fmt: skip
    p.add_argument("recipient", metavar="USER", help="recipient username, or #group")
    p.add_argument("text", metavar="TEXT", nargs="+", help="message text (words are joined)")
    p.add_argument(
        "--client-id", metavar="ID", default=None, help="idempotency id (default: a random one)"
    )
    p = sub.add_parser(
        "listen", parents=[common], help="print incoming messages as they arrive",
        description="Print incoming messages (and acknowledge them) until Ctrl-C or SIGTERM.",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--count", metavar="N", type=int, default=None, help="exit after N messages")
    return parser


# --- helpers ------------------------------------------------------------------------------


def _server(args: argparse.Namespace, saved: SavedSession | None = None) -> str:
    explicit: str | None = getattr(args, "server", None)
    if explicit:
        return explicit
    env = os.environ.get(ENV_SERVER)
    if env:
        return env
    if saved is not None:
        return saved.server
    return DEFAULT_SERVER


def _read_password(args: argparse.Namespace, *, confirm: bool = False) -> str:
    if getattr(args, "password_stdin", False):
        line = sys.stdin.readline()
        if not line:
            raise Failure("No password on stdin.")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise Failure("No terminal to ask the password on; use --password-stdin.")
    try:
        password = getpass.getpass("Password: ")
        if confirm and getpass.getpass("Repeat the password: ") != password:
            raise Failure("The passwords do not match.")
    except EOFError:
        raise Failure("No password given.") from None
    return password


def _saved_session() -> SavedSession:
    try:
        saved = load_session()
    except SessionFileError as exc:
        raise Failure(f"Cannot use the saved login ({exc}); run 'hubbub login USER'.") from None
    if saved is None:
        raise Failure("Not logged in; run 'hubbub login USER' first.")
    if saved.expired():
        raise Failure("The saved login has expired; run 'hubbub login USER' again.")
    return saved


def _explain(exc: HubbubError) -> str:
    if exc.kind is ErrorKind.UNAUTHENTICATED:
        return "The server refused the saved login; run 'hubbub login USER' again."
    return render.sanitize(exc.message)


async def _connect(address: str, token: str | None = None) -> Client:
    return await Client.connect(address, token=token)


def user_json(user: UserInfo) -> dict[str, Any]:
    """A user as a JSON-ready dict (times in ISO 8601, UTC)."""
    return {
        "username": user.username,
        "display_name": user.display_name,
        "online": user.online,
        "bot": user.bot,
        "presence_change_time": (
            user.presence_change_time.isoformat() if user.presence_change_time else None
        ),
    }


def message_json(message: IncomingMessage) -> dict[str, Any]:
    """An incoming message as the JSON object `listen --json` prints.

    Keys: sequence, message_id, sender, recipient, body, send_time (ISO 8601, UTC),
    and `group` for a group message only.
    """
    data: dict[str, Any] = {
        "sequence": message.sequence,
        "message_id": message.message_id,
        "sender": message.sender,
        "recipient": message.recipient,
        "body": message.body,
        "send_time": message.send_time.astimezone(UTC).isoformat(),
    }
    if message.group:
        data["group"] = message.group
    return data


# --- commands -----------------------------------------------------------------------------


async def cmd_register(args: argparse.Namespace, password: str) -> int:
    """`hubbub register USER`: create the account."""
    async with await _connect(_server(args)) as client:
        try:
            user = await client.register(args.username, password, args.display_name)
        except HubbubError as exc:
            if exc.kind is ErrorKind.ALREADY_EXISTS:
                raise Failure(
                    f"Cannot register {render.sanitize(args.username)}: "
                    "that username is already in use."
                ) from None
            detail = "; ".join(v.description for v in exc.field_violations) or exc.message
            raise Failure(
                f"Cannot register {render.sanitize(args.username)}: {render.sanitize(detail)}"
            ) from None
    print(f"Registered {user.username or args.username}.")
    return 0


async def cmd_login(args: argparse.Namespace, password: str) -> int:
    """`hubbub login USER`: log in and save the session file."""
    address = _server(args)
    async with await _connect(address) as client:
        try:
            result = await client.login(args.username, password)
        except HubbubError as exc:
            if exc.kind is ErrorKind.UNAUTHENTICATED:
                raise Failure("Login failed: wrong username or password.") from None
            raise Failure(f"Login failed: {render.sanitize(exc.message)}") from None
    username = result.user.username or args.username
    try:
        save_session(SavedSession(address, username, result.token, result.expire_time))
    except OSError as exc:
        raise Failure(f"Cannot save the login in {session_path()}: {exc.strerror}.") from None
    print(f"Logged in as {username}.")
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
        async with await _connect(_server(args, saved), saved.token) as client:
            await client.logout()
    except HubbubError as exc:
        if exc.kind is not ErrorKind.UNAUTHENTICATED:
            delete_session()
            raise Failure(
                f"Forgot the saved login, but the server did not revoke it: {exc.message}"
            ) from None
    delete_session()
    print("Logged out.")
    return 0


async def cmd_who(args: argparse.Namespace) -> int:
    """`hubbub who [--all] [--json]`: list users."""
    saved = _saved_session()
    async with await _connect(_server(args, saved), saved.token) as client:
        try:
            users = await client.list_users(online_only=not args.all)
        except HubbubError as exc:
            raise Failure(_explain(exc)) from None
    if args.json:
        print(json.dumps([user_json(u) for u in users]))
    elif args.all:
        print(f"There are {len(users)} users:")
        for u in users:
            print(f"{render.sanitize(u.username)} ({'online' if u.online else 'offline'})")
    else:
        print(render.who_header(len(users)))
        for u in users:
            print(render.sanitize(u.username))
    return 0


async def cmd_send(args: argparse.Namespace) -> int:
    """`hubbub send USER TEXT`: send one message and wait until it is stored."""
    saved = _saved_session()
    body = " ".join(args.text)
    group = args.recipient[1:] if args.recipient.startswith("#") else ""
    async with await _connect(_server(args, saved), saved.token) as client:
        try:
            chat = await client.open_chat()
        except HubbubError as exc:
            if exc.kind is ErrorKind.ALREADY_EXISTS:
                raise Failure(
                    f"Cannot send: {saved.username} is connected in another client; "
                    "send from there."
                ) from None
            if exc.kind is ErrorKind.RESOURCE_EXHAUSTED:
                raise Failure("Cannot send: the server is full.") from None
            raise Failure(_explain(exc)) from None
        cid = chat.send(args.recipient, body, args.client_id, group=group)
        try:
            outcome = await asyncio.wait_for(_send_outcome(chat, cid), 30)
        except TimeoutError:
            outcome = "The server did not confirm the message in time."
        except HubbubError as exc:
            outcome = _explain(exc)
        finally:
            await chat.aclose(2.0)
    if outcome is not None:
        raise Failure(outcome)
    print(render.MESSAGE_SENT)
    return 0


async def _send_outcome(chat: Any, cid: str) -> str | None:
    async for event in chat:
        if isinstance(event, SendConfirmed) and event.client_id == cid:
            return None
        if isinstance(event, EventRejected) and event.client_id in (cid, ""):
            if event.reason == "USER_NOT_FOUND" or event.code == 5:
                return render.USER_NOT_FOUND
            if "send.body" in event.fields():
                return "Cannot send: the message is empty or too long."
            return f"Cannot send: {render.sanitize(event.message)}"
    return "The server closed the connection before confirming the message."


async def cmd_listen(args: argparse.Namespace) -> int:
    """`hubbub listen [--json] [--count N]`: print and acknowledge incoming messages."""
    saved = _saved_session()
    if args.count is not None and args.count < 1:
        raise Failure("--count must be at least 1.")
    async with await _connect(_server(args, saved), saved.token) as client:
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


# --- entry point --------------------------------------------------------------------------


def _run(coro: Coroutine[Any, Any, int]) -> int:
    return asyncio.run(coro)


def dispatch(args: argparse.Namespace) -> int:
    """Run the command `args` names; returns the exit status or raises Failure."""
    command: str | None = args.command
    if command in (None, "chat"):
        from .interactive import run_interactive

        return _run(run_interactive(_server(args)))
    if command == "register":
        password = _read_password(args, confirm=True)
        return _run(cmd_register(args, password))
    if command == "login":
        password = _read_password(args)
        return _run(cmd_login(args, password))
    handlers: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, int]]] = {
        "logout": cmd_logout,
        "who": cmd_who,
        "send": cmd_send,
        "listen": cmd_listen,
    }
    return _run(handlers[command](args))


def _fail(line: str, stream: TextIO | None = None) -> int:
    print(line, file=stream or sys.stderr, flush=True)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point `hubbub`; returns the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        return dispatch(args)
    except Failure as exc:
        return _fail(str(exc))
    except HubbubError as exc:
        return _fail(_explain(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # stdout went away (e.g. `hubbub listen | head -1`): nothing left to say.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:  # the last resort: one line, never a traceback
        if os.environ.get("HUBBUB_DEBUG"):
            raise
        return _fail(f"hubbub: unexpected error: {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["build_parser", "main", "message_json", "user_json"]
