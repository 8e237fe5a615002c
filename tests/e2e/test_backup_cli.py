"""End-to-end: `hubbub-server backup/restore/export/import` against a hubbub-server subprocess."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from hubbub.v1 import messenger_pb2 as pb
from hubbub.v1 import messenger_pb2_grpc as pb_grpc

from ..harness.server_process import VENV_BIN, ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
HUBBUB_SERVER = str(VENV_BIN / "hubbub-server")
PASSWORD = "correct horse battery"
ServerFactory = Callable[..., ServerProcess]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `hubbub-server *args` to completion."""
    return subprocess.run(
        [HUBBUB_SERVER, *args], capture_output=True, text=True, timeout=60, check=False
    )


def succeeded(result: subprocess.CompletedProcess[str], starts: str) -> str:
    """Assert exit 0, nothing on stderr and one stdout line starting with ``starts``."""
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    line = result.stdout.strip()
    assert "\n" not in line and line.startswith(starts), result.stdout
    return line


def failed(result: subprocess.CompletedProcess[str], command: str, says: str) -> str:
    """Assert exit 1, nothing on stdout and one stderr line naming ``command`` saying ``says``."""
    assert (result.returncode, result.stdout) == (1, ""), result.stdout
    line = result.stderr.strip()
    assert "\n" not in line, result.stderr
    assert line.startswith(f"hubbub-server {command}: ") and says in line, line
    return line


def stub(server: ServerProcess) -> tuple[grpc.Channel, pb_grpc.MessengerServiceStub]:
    """A plain (blocking) channel and stub to ``server``."""
    channel = grpc.insecure_channel(server.address)
    return channel, pb_grpc.MessengerServiceStub(channel)


def register(server: ServerProcess, *names: str, group: str = "crew") -> None:
    """Register ``names``; the first one creates ``group`` (if not empty) of all of them."""
    channel, api = stub(server)
    with channel:
        for name in names:
            api.Register(pb.RegisterRequest(username=name, password=PASSWORD), timeout=20)
        if not group:
            return
        token = api.Login(pb.LoginRequest(username=names[0], password=PASSWORD), timeout=20).token
        api.CreateGroup(
            pb.CreateGroupRequest(name=group, members=list(names[1:])),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=20,
        )


def can_log_in(server: ServerProcess, name: str) -> bool:
    """True if ``name`` logs in with PASSWORD."""
    channel, api = stub(server)
    with channel:
        try:
            api.Login(pb.LoginRequest(username=name, password=PASSWORD), timeout=20)
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED
            return False
    return True


def groups_of(server: ServerProcess, name: str) -> list[tuple[str, list[str]]]:
    """(name, members) of the groups of ``name``."""
    channel, api = stub(server)
    with channel:
        token = api.Login(pb.LoginRequest(username=name, password=PASSWORD), timeout=20).token
        reply = api.ListGroups(
            pb.ListGroupsRequest(), metadata=(("authorization", f"Bearer {token}"),), timeout=20
        )
    return [(g.name, list(g.members)) for g in reply.groups]


def test_backup_live_then_restore_over_a_crashed_database(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """backup runs against a live server; restore is refused while it runs, refuses garbage,
    and after a crash (SIGKILL, WAL left behind) replaces the database without the old WAL."""
    server = server_factory()
    db = server.database
    assert db is not None
    register(server, "alice", "bob")
    backup = tmp_path / "backups" / "hubbub.bak"
    line = succeeded(run("backup", str(backup), "--database", str(db)), f"backup of {db} written")
    assert "3 users, 1 group," in line  # alice, bob and echobot

    refused = failed(run("restore", str(backup), "--database", str(db)), "restore", "in use")
    assert f"(pid {server.proc.pid if server.proc else 0})" in refused
    garbage = tmp_path / "garbage.bak"
    garbage.write_bytes(b"definitely not a database" * 100)
    other = tmp_path / "other.db"
    failed(run("restore", str(garbage), "--database", str(other)), "restore", "not an SQLite")
    assert not other.exists()

    register(server, "dave", group="")  # after the backup: must not survive the restore
    server.stop(signal.SIGKILL)
    assert db.with_name(db.name + "-wal").stat().st_size > 0  # the crash left a WAL behind
    succeeded(run("restore", str(backup), "--database", str(db)), f"restored {backup} into {db}:")
    assert not db.with_name(db.name + "-wal").exists()
    restarted = server_factory(database=db)
    assert can_log_in(restarted, "alice") and can_log_in(restarted, "bob")
    assert not can_log_in(restarted, "dave")
    assert groups_of(restarted, "bob") == [("crew", ["alice", "bob"])]


def test_second_server_on_the_same_database_is_refused(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """A second hubbub-server on a database in use exits 1 with one line; `serve` is an alias."""
    server = server_factory("serve")  # flags before `serve` still apply
    second = subprocess.run(
        [HUBBUB_SERVER, "serve", "--port", "0", "--database", str(server.database)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode == 1
    assert second.stderr.strip() == (
        f"hubbub-server: the database {server.database} is in use by a running hubbub-server"
        f" (pid {server.proc.pid if server.proc else 0}); stop it first"
    )
    assert "listening" not in second.stdout


def test_export_live_then_import_into_a_new_database(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """export runs live and writes the documented format; import refuses a running server's,
    a non-empty database and malformed JSON, and a new database serves the old accounts."""
    server = server_factory()
    db = server.database
    assert db is not None
    register(server, "alice", "bob", "carol")
    exported = tmp_path / "hubbub.json"
    line = succeeded(run("export", str(exported), "--database", str(db)), f"exported {db} to")
    assert "4 users, 1 group," in line
    document = json.loads(exported.read_text(encoding="utf-8"))
    assert {"format", "version", "exported_at", "users", "groups", "messages", "inbox"} <= set(
        document
    )
    assert (document["format"], document["version"]) == ("hubbub-export", 1)

    failed(run("import", str(exported), "--database", str(db)), "import", "in use")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**document, "format": "other"}), encoding="utf-8")
    new = tmp_path / "new" / "hubbub.db"
    failed(run("import", str(bad), "--database", str(new)), "import", "not a valid Hubbub export")
    assert not new.exists()

    succeeded(run("import", str(exported), "--database", str(new)), f"imported {exported} into")
    failed(run("import", str(exported), "--database", str(new)), "import", "is not empty")
    copy = server_factory(database=new)
    assert all(can_log_in(copy, name) for name in ("alice", "bob", "carol"))
    assert groups_of(copy, "carol") == [("crew", ["alice", "bob", "carol"])]


@pytest.mark.parametrize("command", ["serve", "backup", "restore", "export", "import"])
def test_every_subcommand_has_help(command: str) -> None:
    """`hubbub-server COMMAND --help` exits 0 with its usage."""
    result = run(command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: hubbub-server {command} ")
    assert "--database" in result.stdout


def test_top_level_help_lists_the_commands() -> None:
    """`hubbub-server --help` still shows the server flags and lists the subcommands."""
    result = run("--help")
    assert result.returncode == 0, result.stderr
    for word in ("--port", "--database", "backup", "restore", "export", "import"):
        assert word in result.stdout
