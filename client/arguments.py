"""The `hubbub` argument parser: the commands, their flags and their --help texts."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from . import render
from .client import DEFAULT_SERVER
from .session_store import (
    session_path,
)

ENV_SERVER = "HUBBUB_SERVER"


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
