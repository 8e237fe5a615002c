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
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TextIO

from .arguments import build_parser
from .client import Client
from .commands import (
    _connect,
    _target,
    cmd_group,
    cmd_groups,
    cmd_history,
    cmd_listen,
    cmd_login,
    cmd_logout,
    cmd_profile,
    cmd_register,
    cmd_send,
    cmd_who,
)
from .errors import HubbubError
from .failures import Failure, UsageFailure, _explain
from .password_input import _read_password, read_profile_passwords


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


__all__ = ["dispatch", "main"]
