"""Fixtures for driving the real `hubbub` executable: pexpect terminals and a CLI environment."""

from __future__ import annotations

import asyncio
import io
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pexpect
import pytest

from hubbub.client import Client, ErrorKind, HubbubError

HUBBUB = str(Path(sys.executable).parent / "hubbub")
PASSWORD = "correct-horse-42"
#: The clients run in UTC+05:30 so that "local time" differs from the server's UTC.
CLIENT_TZ = "HBB-05:30"
CLIENT_OFFSET = timezone(timedelta(hours=5, minutes=30))

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>78]|\x08")


def strip_ansi(text: str) -> str:
    """Terminal output without escape sequences, backspaces and carriage returns."""
    return _ANSI.sub("", text).replace("\r", "")


def local_hhmm_near_now(hhmm: str) -> bool:
    """True if HH:MM is the clients' local time now, give or take a minute."""
    now = datetime.now(CLIENT_OFFSET)
    candidates = {(now + timedelta(minutes=d)).strftime("%H:%M") for d in (-1, 0, 1)}
    return hhmm in candidates


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """Environment for `hubbub` processes: private config dir, no CPR queries, local TZ."""
    config = tmp_path / "xdg-config"
    config.mkdir()
    return {
        **os.environ,
        "XDG_CONFIG_HOME": str(config),
        "PROMPT_TOOLKIT_NO_CPR": "1",
        "TERM": "xterm",
        "TZ": CLIENT_TZ,
        "PYTHONUNBUFFERED": "1",
    }


class Terminal:
    """One `hubbub` process on a pseudo-terminal, with everything it printed recorded."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log = io.StringIO()
        self.log_path = log_path
        self.child = pexpect.spawn(
            HUBBUB, args, env=env, encoding="utf-8", timeout=20, dimensions=(50, 200)
        )
        self.child.logfile_read = self.log

    def expect(self, text: str, timeout: float = 20) -> None:
        """Wait until `text` appears in the output (exact match)."""
        self.child.expect_exact(text, timeout=timeout)

    def expect_re(self, pattern: str, timeout: float = 20) -> re.Match[str]:
        """Wait for a regular expression; returns its match."""
        self.child.expect(pattern, timeout=timeout)
        match = self.child.match
        assert isinstance(match, re.Match)
        return match

    def sendline(self, line: str) -> None:
        """Type a line and Enter."""
        self.child.sendline(line)

    def ctrl_d(self) -> None:
        """Press Ctrl-D once the input prompt is drawn (the terminal is then in raw mode)."""
        self.expect(">")
        self.child.sendcontrol("d")

    def mark(self) -> int:
        """A position in the output, for `expect_all(..., since=mark)`."""
        return len(self.log.getvalue())

    def expect_all(self, *texts: str, since: int = 0, timeout: float = 20) -> None:
        """Wait until every one of `texts` was printed after position `since`, in any order.

        For lines whose relative order is not fixed (a command's answer and a stream event).
        Output read while waiting is consumed: later `expect` calls only see newer output.
        """
        deadline = time.monotonic() + timeout
        ended = False
        while True:
            seen = strip_ansi(self.log.getvalue()[since:])
            missing = [t for t in texts if t not in seen]
            if not missing:
                return
            if ended or time.monotonic() > deadline:
                raise AssertionError(f"never printed {missing!r}; output since mark:\n{seen}")
            ended = self.child.expect([pexpect.TIMEOUT, pexpect.EOF], timeout=0.1) == 1

    def settle(self, seconds: float = 0.5) -> None:
        """Read whatever arrives during `seconds` (so it is in the transcript)."""
        self.child.expect([pexpect.TIMEOUT, pexpect.EOF], timeout=seconds)

    def transcript(self) -> str:
        """Everything printed so far, escape sequences removed."""
        return strip_ansi(self.log.getvalue())

    def count(self, text: str) -> int:
        """How many times `text` was printed so far."""
        return self.transcript().count(text)

    def login(self, username: str, password: str = PASSWORD, *, welcome: bool = True) -> None:
        """Answer the login dialogue for an existing account and wait for success."""
        if welcome:
            self.expect("Welcome to Chat Client. Enter your login:")
        self.sendline(username)
        self.expect("Password:")
        self.sendline(password)
        self.expect(f"Successfully logged in as {username}!")

    def wait_exit(self, timeout: float = 20) -> int:
        """Wait for the process to end; returns its exit status."""
        self.child.expect(pexpect.EOF, timeout=timeout)
        self.child.close()
        status: int | None = self.child.exitstatus
        assert status is not None, f"killed by signal {self.child.signalstatus}"
        return status

    def close(self) -> None:
        """Kill the process if still running and save the transcript next to the test files."""
        if self.child.isalive():
            self.child.terminate(force=True)
        self.log_path.write_text(self.transcript(), encoding="utf-8")


@pytest.fixture
def terminal(cli_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Terminal]]:
    """Start `hubbub --server ADDRESS [args]` on a pty; every terminal is closed at teardown."""
    started: list[Terminal] = []

    def start(address: str, *args: str, name: str = "term") -> Terminal:
        term = Terminal(
            ["--server", address, *args], cli_env, tmp_path / f"{name}-{len(started)}.log"
        )
        started.append(term)
        return term

    yield start
    for term in started:
        term.close()


def _register_users(address: str, *usernames: str, password: str = PASSWORD) -> None:
    async def run() -> None:
        async with await Client.connect(address) as client:
            for name in usernames:
                try:
                    await client.register(name, password, name.title())
                except HubbubError as exc:
                    if exc.kind is not ErrorKind.ALREADY_EXISTS:
                        raise

    asyncio.run(run())


@pytest.fixture
def register_users() -> Callable[..., None]:
    """`register_users(address, *names)` creates accounts (password PASSWORD) via the library."""
    return _register_users


@pytest.fixture
def password() -> str:
    """The password of accounts made by `register_users` and `Terminal.login`."""
    return PASSWORD


@pytest.fixture
def hhmm_ok() -> Callable[[str], bool]:
    """`hhmm_ok("HH:MM")`: is it the clients' local time (UTC+05:30) now, +-1 minute?"""
    return local_hhmm_near_now


@pytest.fixture
def clean() -> Callable[[str], str]:
    """`clean(text)` strips terminal escape sequences and carriage returns."""
    return strip_ansi
