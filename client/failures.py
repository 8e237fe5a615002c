"""How a `hubbub` command fails: one line on stderr and an exit status (see `cli`)."""

from __future__ import annotations

from . import render
from .errors import ErrorKind, HubbubError


class Failure(Exception):
    """A command failed; `str(exc)` is the one line for stderr."""


class UsageFailure(Failure):
    """A command cannot run as asked (exit status 2); `str(exc)` is the line for stderr."""


def _explain(exc: HubbubError) -> str:
    if exc.kind is ErrorKind.UNAUTHENTICATED:
        return "The server refused the saved login; run 'hubbub login USER' again."
    return render.shown(exc.message)
