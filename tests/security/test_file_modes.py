"""Issue 8 hole 7: the database and everything made from it are readable by the owner only."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from hubbub.server import backup as bk
from hubbub.server.config import ServerConfig

from ..integration.conftest import close_node, open_node, register_login

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """Run with the common umask 022, under which files are 0644 and folders 0755 by default."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    """The permission bits of ``path``."""
    return stat.S_IMODE(path.stat().st_mode)


def db_files(database: Path) -> list[Path]:
    """The database, its -wal/-shm and its lock file that exist now."""
    names = [database.name + s for s in ("", "-wal", "-shm", ".lock")]
    return [database.with_name(n) for n in names if database.with_name(n).exists()]


async def test_server_creates_its_folder_0700_and_files_0600(tmp_path: Path) -> None:
    """A server on a new path makes the data folder 0700 and the database, -wal, -shm and
    lock 0600; an existing database left 0644 by an older version is made 0600 on start."""
    database = tmp_path / "data" / "hubbub.db"
    node = await open_node(ServerConfig(port=0, database=str(database), grace_s=1.0))
    try:
        await register_login(node, "alice")
        assert mode(database.parent) == 0o700
        files = db_files(database)
        assert {p.name for p in files} == {
            "hubbub.db",
            "hubbub.db-wal",
            "hubbub.db-shm",
            "hubbub.db.lock",
        }
        assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}
    finally:
        await close_node(node)
    for path in db_files(database):
        path.chmod(0o644)  # as an older hubbub-server left them
    node = await open_node(ServerConfig(port=0, database=str(database), grace_s=1.0))
    try:
        assert {p.name: mode(p) for p in db_files(database)} == {
            p.name: 0o600 for p in db_files(database)
        }
    finally:
        await close_node(node)


async def test_backup_export_restore_and_import_write_0600_files(tmp_path: Path) -> None:
    """Backup and export files (and their new folders), a restored and an imported
    database are owner-only."""
    database = tmp_path / "data" / "hubbub.db"
    node = await open_node(ServerConfig(port=0, database=str(database), grace_s=1.0))
    try:
        await register_login(node, "alice")
        backup = tmp_path / "backups" / "hubbub.bak"
        bk.backup_database(database, backup)
        export = tmp_path / "exports" / "hubbub.json"
        bk.export_database(database, export)
    finally:
        await close_node(node)
    assert (mode(backup), mode(backup.parent)) == (0o600, 0o700)
    assert (mode(export), mode(export.parent)) == (0o600, 0o700)
    restored = tmp_path / "restored" / "hubbub.db"
    bk.restore_database(backup, restored)
    assert (mode(restored), mode(restored.parent)) == (0o600, 0o700)
    imported = tmp_path / "imported" / "hubbub.db"
    bk.import_database(export, imported)
    assert (mode(imported), mode(imported.parent)) == (0o600, 0o700)
    assert all(mode(p) == 0o600 for p in db_files(imported) + db_files(restored))
