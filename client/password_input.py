"""Reading passwords for `hubbub register`, `login` and `profile`: from the terminal
(no echo) or from stdin (`--password-stdin`, `--current-password-stdin`)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from . import render
from .failures import Failure


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
