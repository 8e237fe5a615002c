"""End-to-end: `grpcurl describe` through server reflection shows the .proto comments."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ..harness.server_process import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]
GRPCURL = str(Path(sys.executable).parent / "grpcurl")


def describe(server: ServerProcess, symbol: str) -> str:
    """`grpcurl -plaintext ADDRESS describe SYMBOL`; returns stdout (fails on an error)."""
    out = subprocess.run(
        [GRPCURL, "-plaintext", "-max-time", "20", server.address, "describe", symbol],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_describe_rpc_shows_its_documentation(server_process: ServerProcess) -> None:
    """`describe hubbub.v1.MessengerService.SendMessage` prints the RPC's proto comment."""
    text = describe(server_process, "hubbub.v1.MessengerService.SendMessage")
    assert "SendMessage stores one message durably and answers when it is" in text
    assert "rpc SendMessage ( .hubbub.v1.SendMessageRequest )" in text


def test_describe_service_and_message_show_documentation(server_process: ServerProcess) -> None:
    """The service listing documents every RPC, and a message documents its fields."""
    service = describe(server_process, "hubbub.v1.MessengerService")
    assert "ListGroups lists the groups the caller belongs to, with their members." in service
    message = describe(server_process, "hubbub.v1.ListUsersResponse")
    assert "// Users sorted by username." in message
    assert "// Token for the next page; empty on the last page." in message
