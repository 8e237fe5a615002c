"""End-to-end: the real `hubbub` executable pages through ListUsers (issue 8 hole 5, CLI
half) and accepts several server addresses (issue 9 item 4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent import futures
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from hubbub.client.session_store import SavedSession, save_session
from hubbub.v1 import messenger_pb2 as pb
from hubbub.v1 import messenger_pb2_grpc as pb_grpc

HUBBUB = str(Path(sys.executable).parent / "hubbub")
PASSWORD = "correct-horse-42"
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


class PagingServer(pb_grpc.MessengerServiceServicer):
    """ListUsers over `total` accounts, AIP-158 pages of at most 1000 (default 100)."""

    def __init__(self, total: int) -> None:
        self.names = [f"user{i:05d}" for i in range(total)]
        self.page_sizes: list[int] = []

    def ListUsers(self, request: Any, context: Any) -> pb.ListUsersResponse:
        self.page_sizes.append(request.page_size)
        start = int(request.page_token or 0)
        size = min(request.page_size or 100, 1000)
        page = self.names[start : start + size]
        token = str(start + size) if start + size < len(self.names) else ""
        return pb.ListUsersResponse(
            users=[pb.User(username=n, presence=pb.PRESENCE_ONLINE) for n in page],
            next_page_token=token,
        )


@pytest.fixture
def paging_server() -> Iterator[tuple[str, PagingServer]]:
    """A fake Hubbub server with 2,345 accounts; yields (address, servicer)."""
    servicer = PagingServer(2_345)  # type: ignore[abstract]  # a fake: ListUsers only
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_MessengerServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        server.stop(None)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """CLI environment: private config directory, no HUBBUB_SERVER."""
    config = tmp_path / "xdg"
    config.mkdir()
    out = {**os.environ, "XDG_CONFIG_HOME": str(config)}
    out.pop("HUBBUB_SERVER", None)
    return out


def run(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `hubbub ARGS`, capturing its output."""
    return subprocess.run(
        [HUBBUB, *args], input=stdin, capture_output=True, text=True, env=env, timeout=60,
        check=False,
    )  # fmt: skip


def test_who_pages_through_every_user(
    paging_server: tuple[str, PagingServer], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`hubbub who --all`, `who` and `who --json` list all 2,345 users, not just one page."""
    address, servicer = paging_server
    monkeypatch.setenv("XDG_CONFIG_HOME", env["XDG_CONFIG_HOME"])
    save_session(SavedSession(address, "alice", "tok", datetime.now(UTC) + timedelta(hours=1)))
    everyone = run(env, "who", "--all")
    assert everyone.returncode == 0, everyone.stderr
    lines = everyone.stdout.splitlines()
    assert lines[0] == "There are 2345 users:"
    assert lines[1:] == [f"{n} (online)" for n in servicer.names]
    online = run(env, "who")
    assert online.stdout.splitlines()[0] == "There are 2345 online users:"
    as_json = json.loads(run(env, "who", "--json").stdout)
    assert [u["username"] for u in as_json] == servicer.names
    assert set(servicer.page_sizes) == {1000}


def test_one_shots_use_the_first_live_address_and_bind_the_login_to_the_list(
    server_process: Any, env: dict[str, str], register_users: Callable[..., None]
) -> None:
    """`--server DEAD --server LIVE` (or a comma list) reaches the live node; the saved
    login names both, and later commands with either spelling use it."""
    register_users(server_process.address, "alice")
    dead = "127.0.0.1:1"
    result = run(env, "--server", dead, "--server", server_process.address, "login", "alice",
                 "--password-stdin", stdin=PASSWORD + "\n")  # fmt: skip
    assert (result.returncode, result.stdout) == (0, "Logged in as alice.\n"), result.stderr
    saved = json.loads((Path(env["XDG_CONFIG_HOME"]) / "hubbub" / "session.json").read_text())
    assert saved["server"] == f"{dead},{server_process.address}"
    assert run(env, "who").returncode == 0
    again = run(env, "--server", f"{dead},{server_process.address}", "who", "--all")
    assert (again.returncode, again.stdout) == (
        0,
        "There are 2 users:\nalice (offline)\nechobot (online)\n",
    ), again.stderr
