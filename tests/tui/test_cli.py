"""End-to-end: `hubbub tui` on a pseudo-terminal against a real `hubbub-server`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pexpect
import pytest

from hubbub.client import Client

from .conftest import PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

HUBBUB = str(Path(sys.executable).parent / "hubbub")


async def test_hubbub_tui_logs_in_sends_and_quits(server_process: Any, tmp_path: Path) -> None:
    """`hubbub tui --server ADDR` shows the login screen, logs in, sends a message that
    the recipient gets, and ctrl+q ends it with status 0 and no traceback."""
    async with await Client.connect(server_process.address) as client:
        await client.register("alice", PASSWORD)
        await client.register("bob", PASSWORD)
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "TERM": "xterm-256color",
        "TZ": "UTC",
    }
    child = pexpect.spawn(
        HUBBUB, ["tui", "--server", server_process.address], env=env,
        dimensions=(30, 100), encoding="utf-8", timeout=20,
    )  # fmt: skip
    try:
        child.expect("log in to")
        child.expect([pexpect.TIMEOUT], timeout=1)  # let the screen take the focus
        child.send("alice\r")
        child.send(PASSWORD + "\r")
        child.expect("connected", timeout=60)
        child.send("@bob hello from the tui\r")
        async with await Client.connect(server_process.address) as bob:
            await bob.login("bob", PASSWORD)
            for _ in range(50):
                page = await bob.list_history(username="alice")
                if page.messages:
                    break
                child.expect([pexpect.TIMEOUT], timeout=0.2)
            assert [m.body for m in page.messages] == ["hello from the tui"]
        child.send("\x11")  # ctrl+q
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    assert "Traceback" not in (child.before or "")
    assert (tmp_path / "config" / "hubbub" / "session.json").exists()
