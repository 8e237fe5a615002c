"""Export and import through the shared core on PostgreSQL: the same JSON both ways."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hubbub.server import backup as bk
from hubbub.server.models import utc_now
from hubbub.server.store_postgres import PostgresStore

from ..backends import postgres_server, postgres_url
from .conftest import Node, close_node
from .test_backup import populate, start_on

__all__ = ["postgres_server", "postgres_url"]  # fixtures used by name

pytestmark = pytest.mark.timeout(120)
HUBBUB_SERVER = str(Path(sys.executable).parent / "hubbub-server")


def read(path: Path) -> dict[str, Any]:
    """The JSON document in ``path`` without its ``exported_at`` time."""
    return {**json.loads(path.read_text(encoding="utf-8")), "exported_at": ""}


async def sqlite_export(tmp_path: Path) -> Path:
    """A live SQLite database with users, a group, direct and group messages, receipts and
    acks, exported to JSON; returns the file."""
    db = tmp_path / "live" / "hubbub.db"
    node: Node = await start_on(db)
    try:
        await populate(node)
    finally:
        await close_node(node)
    exported = tmp_path / "sqlite.json"
    bk.export_database(db, exported)
    return exported


async def test_sqlite_json_postgres_json_sqlite_json_identical(
    tmp_path: Path, postgres_url: str
) -> None:
    """SQLite → JSON → PostgreSQL → JSON → SQLite → JSON gives the same document each time,
    and the imported PostgreSQL database goes on with new message ids after the imported ones."""
    first = await sqlite_export(tmp_path)
    document = read(first)
    assert len(document["messages"]) >= 10 and document["groups"]
    counts = await bk.import_postgres(first, postgres_url)
    assert counts == bk.Counts(4, 1, len(document["messages"]), len(document["inbox"]))
    from_postgres = tmp_path / "postgres.json"
    assert await bk.export_postgres(postgres_url, from_postgres) == counts
    assert read(from_postgres) == document
    back = tmp_path / "back" / "hubbub.db"
    assert bk.import_database(from_postgres, back) == counts
    again = tmp_path / "again.json"
    bk.export_database(back, again)
    assert read(again) == document

    store = PostgresStore(postgres_url)
    await store.open()
    try:
        alice, bob = await store.get_account("alice"), await store.get_account("bob")
        assert alice is not None and bob is not None
        stored = await store.store_message(alice, bob, "after-import", "hi", utc_now())
        assert stored.message_id > max(m["id"] for m in document["messages"])
        assert len(await store.history_id()) == 32
    finally:
        await store.close()


async def test_postgres_import_refuses_a_database_that_is_not_empty(
    tmp_path: Path, postgres_url: str
) -> None:
    """A second import into the same PostgreSQL database is refused in one line and changes
    nothing; so is a file that is not a valid export."""
    exported = await sqlite_export(tmp_path)
    await bk.import_postgres(exported, postgres_url)
    before = tmp_path / "before.json"
    await bk.export_postgres(postgres_url, before)
    with pytest.raises(bk.BackupError, match="is not empty") as refused:
        await bk.import_postgres(exported, postgres_url)
    assert "\n" not in str(refused.value) and "password" not in str(refused.value)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**json.loads(exported.read_text()), "format": "other"}))
    with pytest.raises(bk.ExportFormatError):
        await bk.import_postgres(bad, postgres_url)
    after = tmp_path / "after.json"
    await bk.export_postgres(postgres_url, after)
    assert read(after) == read(before)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``hubbub-server ARGS`` (60 s at most)."""
    return subprocess.run(
        [HUBBUB_SERVER, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


async def test_cli_export_and_import_work_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    """``hubbub-server import --postgres-url`` and ``export`` (flag or HUBBUB_POSTGRES_URL)
    work on PostgreSQL with one summary line; backup and restore still refuse it."""
    exported = await sqlite_export(tmp_path)
    done = run_cli("import", "--postgres-url", postgres_url, str(exported))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"imported {exported} into postgresql://")
    out = tmp_path / "cli.json"
    done = run_cli("export", str(out), env={"HUBBUB_POSTGRES_URL": postgres_url})
    assert done.returncode == 0, done.stderr
    assert read(out) == read(exported)
    refused = run_cli("--postgres-url", postgres_url, "backup", str(tmp_path / "b.bak"))
    assert refused.returncode == 1 and "pg_dump" in refused.stderr
