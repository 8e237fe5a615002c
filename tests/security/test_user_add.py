"""``hubbub-server user add`` (issue 8, hole 4): the operator creates accounts, registration closed.

Drives the real ``hubbub-server`` executables (a running server and the
``user add`` command next to it) and logs in over gRPC.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from hubbub.v1 import messenger_pb2 as pb
from hubbub.v1 import messenger_pb2_grpc as pb_grpc
from tests.harness.server_process import VENV_BIN, ServerProcess
from tests.integration.conftest import PASSWORD
from tests.security.test_login_throttle import reason, refused

pytestmark = pytest.mark.e2e


def user_add(
    database: Path, *args: str, password: str = PASSWORD
) -> subprocess.CompletedProcess[str]:
    """Run ``hubbub-server user add ARGS --password-stdin --database DATABASE``."""
    return subprocess.run(
        [str(VENV_BIN / "hubbub-server"), "user", "add", *args, "--password-stdin",
         "--database", str(database)],
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip


@pytest.mark.timeout(120)
async def test_operator_adds_users_to_a_running_closed_server(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """With --registration closed, `user add` creates an account the running server logs in."""
    server = server_factory("--registration", "closed")
    assert server.database is not None
    done = user_add(server.database, "Alice", "--display-name", "Alice Liddell")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f'added user alice ("Alice Liddell") to {server.database}\n'
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = pb_grpc.MessengerServiceStub(channel)
        reply = await stub.Login(pb.LoginRequest(username="alice", password=PASSWORD))
        assert (reply.user.username, reply.user.display_name) == ("alice", "Alice Liddell")
        err = await refused(stub.Register(pb.RegisterRequest(username="bob", password=PASSWORD)))
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert reason(err) == "REGISTRATION_CLOSED"
    again = user_add(server.database, "alice")
    assert again.returncode == 1
    assert again.stderr == "hubbub-server user add: The username 'alice' is already taken.\n"
    reserved = user_add(server.database, "echobot")
    assert reserved.returncode == 1 and reserved.stderr.count("\n") == 1
    short = user_add(server.database, "carol", password="short")
    assert short.returncode == 1
    assert "password" in short.stderr and short.stderr.count("\n") == 1
