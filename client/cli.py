"""`hubbub`: the command line. No subcommand (or `chat`) runs the interactive chat;
`register`, `login`, `logout`, `who`, `send`, `listen`, `groups`, `group`, `history`
and `profile` are one-shots for scripts.

Exit status: 0 on success, 1 on a failure (one line on stderr), 2 on a usage
error (also: a password or token would go in plaintext to another machine without
--insecure), 130 when interrupted by Ctrl-C outside a command that expects it.

Where it connects: `--server` (repeatable, or a comma list of the nodes of one
cluster; `grpcs://host:port` for TLS), else $HUBBUB_SERVER, else the saved login's
server, else 127.0.0.1:50051. `--tls` / `--ca-file PEM` switch TLS on (system roots by
default). A saved login is only ever sent to the server it came from.
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
from datetime import UTC, datetime
from typing import Any, NoReturn, TextIO

from . import render
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
from .session_store import (
    SavedSession,
    SessionFileError,
    delete_session,
    load_session,
    save_session,
    session_path,
)
from .target import ServerTarget, TargetError, parse_target

ENV_SERVER = "HUBBUB_SERVER"


class Failure(Exception):
    """A command failed; `str(exc)` is the one line for stderr."""


class UsageFailure(Failure):
    """A command cannot run as asked (exit status 2); `str(exc)` is the line for stderr."""


# --- argument parsing ---------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line on stderr (exit status 2).

    `after_parse`, if set, checks (and may complete) the parsed namespace; it calls
    `error` for combinations argparse cannot express.
    """

    after_parse: Callable[[_Parser, argparse.Namespace], None] | None = None

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: Any = None
    ) -> tuple[Any, list[str]]:
        """Parse as argparse does, then run `after_parse`."""
        ns, extra = super().parse_known_args(args, namespace)
        if self.after_parse is not None:
            self.after_parse(self, ns)
        return ns, extra

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def _split_send_words(parser: _Parser, ns: argparse.Namespace) -> None:
    """`send`: the words are `USER|#GROUP TEXT…`, or only TEXT… with --random."""
    words: list[str] = ns.words
    if ns.random:
        ns.recipient, ns.text = "", words
    elif len(words) < 2:
        parser.error("the following arguments are required: TEXT")
    else:
        ns.recipient, ns.text = words[0], words[1:]


_PROFILE_EPILOG = """\
passwords:
  --password              asks on the terminal: the current password, then the new
                          one twice (no echo).
  --password-stdin        reads the new password from the first line of stdin; the
                          current password is then asked on the terminal ...
  --current-password-stdin
                          ... or, with this flag, read from stdin as well: line 1 is
                          the current password, line 2 the new one.

A new password logs out every other session of the account; the saved login stays
valid. Example for a script:

  printf '%s\\n%s\\n' "$OLD" "$NEW" | hubbub profile --current-password-stdin --password-stdin
"""


class _ServerAction(argparse.Action):
    """`--server` may be repeated: the values are joined into one comma list."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        before = getattr(namespace, self.dest, None)
        setattr(namespace, self.dest, f"{before},{values}" if before else values)


def _add_connection_flags(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """--server, --tls, --ca-file, --insecure (on the main parser and every command)."""
    default: Any = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--server", metavar="HOST:PORT", default=default, action=_ServerAction,
        help=f"server address; repeat it or give a comma list for the nodes of a cluster; "
        f"grpcs://HOST:PORT for TLS (default: ${ENV_SERVER}, the saved login's, or "
        f"{DEFAULT_SERVER})",
    )  # fmt: skip
    parser.add_argument(
        "--tls", action="store_true", default=False if top else argparse.SUPPRESS,
        help="use TLS, trusting the system's root certificates (or --ca-file)",
    )  # fmt: skip
    parser.add_argument(
        "--ca-file", metavar="PEM", default="" if top else argparse.SUPPRESS,
        help="trust the certificates in this PEM file (implies --tls)",
    )  # fmt: skip
    parser.add_argument(
        "--insecure", action="store_true", default=False if top else argparse.SUPPRESS,
        help="allow sending the password or token without TLS to a machine other than "
        "this one",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The full `hubbub` argument parser (every command has --help)."""
    parser = _Parser(
        prog="hubbub",
        description="Hubbub messenger client. Without a command, starts the interactive chat.",
        epilog=f"The server defaults to ${ENV_SERVER} or {DEFAULT_SERVER}.",
    )
    _add_connection_flags(parser, top=True)
    common = _Parser(add_help=False)
    _add_connection_flags(common, top=False)
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
    sub.add_parser(
        "tui", parents=[common], help="full-screen chat (conversations, history, unread counts)",
        description="Full-screen chat: a sidebar of conversations, scrollback, the same "
        "! commands; reuses the saved login. ctrl+k opens the command palette.",
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
        "send", parents=[common], help="send one message to a user, a group or anyone online",
        description=(
            "Send TEXT to USER, to the group #GROUP, or with --random to one other online "
            "user the server picks, using the saved session; exits when the server stored it."
        ),
        usage="hubbub send [-h] [--server HOST:PORT] [--tls] [--ca-file PEM] [--insecure] "
        "[--client-id ID] "
        "(USER|#GROUP TEXT... | --random TEXT...)",
    )  # fmt: skip
    p.add_argument(
        "words", metavar="USER|#GROUP TEXT", nargs="+",
        help="recipient username or #group (omitted with --random), then the message text "
        "(words are joined)",
    )  # fmt: skip
    assert isinstance(p, _Parser)
    p.after_parse = _split_send_words
    p.add_argument(
        "--random", action="store_true",
        help="send to a random online user; prints 'The message was sent to USER'",
    )  # fmt: skip
    p.add_argument(
        "--client-id", metavar="ID", default=None, help="idempotency id (default: a random one)"
    )
    p = sub.add_parser(
        "listen", parents=[common], help="print incoming messages as they arrive",
        description="Print incoming messages (and acknowledge them) until Ctrl-C or SIGTERM.",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--count", metavar="N", type=int, default=None, help="exit after N messages")
    p = sub.add_parser(
        "groups", parents=[common], help="list your groups",
        description="List the groups you belong to with their members.",
    )  # fmt: skip
    p.add_argument(
        "--json", action="store_true", help="print a JSON array of {name, members, create_time}"
    )
    p = sub.add_parser(
        "group", parents=[common], help="create a group, add members to one, or leave one",
        description="Manage groups: 'group create', 'group add', 'group leave'.",
    )  # fmt: skip
    gsub = p.add_subparsers(
        dest="group_command", metavar="ACTION", parser_class=_Parser, required=True
    )
    g = gsub.add_parser(
        "create", parents=[common], help="create a group with you and USERs",
        description="Create the group NAME with you and the USERs as members.",
    )  # fmt: skip
    g.add_argument("name", metavar="NAME", help="group name (a leading # is optional)")
    g.add_argument("members", metavar="USER", nargs="*", help="members besides you")
    g = gsub.add_parser(
        "add", parents=[common], help="add USERs to a group you belong to",
        description="Add the USERs to the group NAME (you must be a member).",
    )  # fmt: skip
    g.add_argument("name", metavar="NAME", help="group name (a leading # is optional)")
    g.add_argument("members", metavar="USER", nargs="+", help="users to add")
    g = gsub.add_parser(
        "leave", parents=[common], help="leave a group",
        description="Leave the group NAME.",
    )  # fmt: skip
    g.add_argument("name", metavar="NAME", help="group name (a leading # is optional)")
    p = sub.add_parser(
        "history", parents=[common], help="show the last messages of a conversation",
        description=(
            "Show the last N messages exchanged with @USER (a bare USER works too) or sent "
            "to #GROUP, oldest first."
        ),
    )  # fmt: skip
    p.add_argument("target", metavar="@USER|#GROUP", help="the conversation")
    p.add_argument(
        "-n", metavar="N", type=int, default=render.HISTORY_DEFAULT, dest="count",
        help=f"how many messages (1-{render.HISTORY_MAX}, default {render.HISTORY_DEFAULT})",
    )  # fmt: skip
    p.add_argument(
        "--json", action="store_true",
        help="print a JSON array, oldest first, of {message_id, sender, recipient, body, "
        "send_time[, group]}",
    )  # fmt: skip
    p = sub.add_parser(
        "profile", parents=[common], help="change your display name or password",
        description="Change the display name and/or the password of the saved login.",
        epilog=_PROFILE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("--display-name", metavar="NAME", default=None, help="the new display name")
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--password", action="store_true", help="change the password, asking on the terminal"
    )
    how.add_argument(
        "--password-stdin", action="store_true",
        help="change the password; the new one is read from stdin",
    )  # fmt: skip
    p.add_argument(
        "--current-password-stdin", action="store_true",
        help="read the current password from stdin (before the new one); needs --password-stdin",
    )  # fmt: skip
    return parser


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


def _explain(exc: HubbubError) -> str:
    if exc.kind is ErrorKind.UNAUTHENTICATED:
        return "The server refused the saved login; run 'hubbub login USER' again."
    return render.shown(exc.message)


async def _connect(target: str | ServerTarget, token: str | None = None) -> Client:
    return await Client.connect(target, token=token)


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


def group_json(group: GroupInfo) -> dict[str, Any]:
    """A group as the JSON object `groups --json` prints: name, members, create_time."""
    return {
        "name": group.name,
        "members": list(group.members),
        "create_time": _iso(group.create_time),
    }


def history_json(message: IncomingMessage) -> dict[str, Any]:
    """A history message as `history --json` prints it.

    Keys: message_id, sender, recipient, body, send_time (ISO 8601, UTC), and `group`
    for a group message only.
    """
    data: dict[str, Any] = {
        "message_id": message.message_id,
        "sender": message.sender,
        "recipient": message.recipient,
        "body": message.body,
        "send_time": _iso(message.send_time),
    }
    if message.group:
        data["group"] = message.group
    return data


def _iso(when: datetime | None) -> str | None:
    return when.astimezone(UTC).isoformat() if when is not None else None


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
    target = render.parse_history_target(args.target)
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


def _stdin_line(what: str) -> str:
    line = sys.stdin.readline()
    if not line:
        raise Failure(f"No {what} on stdin.")
    return line.rstrip("\r\n")


def _terminal_available() -> bool:
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


def read_profile_passwords(args: argparse.Namespace) -> tuple[str, str]:
    """(current, new) password for `hubbub profile`, or ("", "") if none is to change.

    `--current-password-stdin --password-stdin`: stdin line 1 is the current password,
    line 2 the new one; `--password-stdin` alone: the new one from stdin, the current one
    asked on the terminal; `--password`: both asked on the terminal, the new one twice.
    """
    if args.current_password_stdin and not args.password_stdin:
        raise Failure("--current-password-stdin needs --password-stdin.")
    if not (args.password or args.password_stdin):
        return "", ""
    try:
        if args.password_stdin:
            current = _stdin_line("current password") if args.current_password_stdin else ""
            new = _stdin_line("new password")
            if not args.current_password_stdin:
                if not _terminal_available():
                    raise Failure(
                        "No terminal to ask the current password on; use --current-password-stdin."
                    )
                current = getpass.getpass("Current password: ")
        else:
            if not sys.stdin.isatty():
                raise Failure("No terminal to ask the passwords on; use --password-stdin.")
            current = getpass.getpass("Current password: ")
            new = getpass.getpass("New password: ")
            if getpass.getpass("Repeat the new password: ") != new:
                raise Failure(render.PASSWORDS_DIFFER)
    except EOFError:
        raise Failure("No password given.") from None
    if not new:
        raise Failure("The new password is empty.")
    return current, new


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


# --- entry point --------------------------------------------------------------------------


def _run(coro: Coroutine[Any, Any, int]) -> int:
    return asyncio.run(coro)


def dispatch(args: argparse.Namespace) -> int:
    """Run the command `args` names; returns the exit status or raises Failure."""
    command: str | None = args.command
    if command in (None, "chat"):
        from .interactive import run_interactive

        return _run(run_interactive(_target(args)))
    if command == "tui":
        from .tui import run_tui

        target = _target(args)  # TLS flags, several servers, no plaintext credentials afar

        async def connect_tui(_address: str) -> Client:
            return await _connect(target)

        return run_tui(target.key, connect_tui)
    if command == "register":
        password = _read_password(args, confirm=True)
        return _run(cmd_register(args, password))
    if command == "login":
        password = _read_password(args)
        return _run(cmd_login(args, password))
    if command == "profile":
        if args.display_name is None and not (args.password or args.password_stdin):
            raise Failure("Nothing to change: give --display-name, --password or --password-stdin.")
        current, new = read_profile_passwords(args)
        return _run(cmd_profile(args, current, new))
    handlers: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, int]]] = {
        "logout": cmd_logout,
        "who": cmd_who,
        "send": cmd_send,
        "listen": cmd_listen,
        "groups": cmd_groups,
        "group": cmd_group,
        "history": cmd_history,
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
    except UsageFailure as exc:
        _fail(str(exc))
        return 2
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


__all__ = [
    "build_parser",
    "group_json",
    "history_json",
    "main",
    "message_json",
    "read_profile_passwords",
    "user_json",
]
