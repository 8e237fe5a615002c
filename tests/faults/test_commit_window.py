"""The SQLite commit window delays commits, never answers: a write is answered after its sync."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hubbub.server.store_sqlite import SqliteStore

WINDOW_S = 0.3  # long enough that an answer given before the window ends would be seen
SPACING_S = 0.02  # between writes: well inside the window, so the window is in use

# A store with a long commit window writing a message every SPACING_S s and printing
# each message id as soon as its write is answered (what a send_result reports).
CHILD = f"""
import asyncio, sys
from datetime import UTC, datetime
from hubbub.server.store_sqlite import SqliteStore

async def main() -> None:
    store = SqliteStore(sys.argv[1], commit_window_s={WINDOW_S})
    await store.open()
    alice = await store.create_account("alice", "Alice", "x")
    bob = await store.create_account("bob", "Bob", "x")
    print("ready", flush=True)

    async def send(i: int) -> None:
        appended = await store.store_message(alice, bob, f"c{{i}}", "hi", datetime.now(UTC))
        print(appended.message_id, flush=True)

    tasks = []
    for i in range(100_000):
        tasks.append(asyncio.create_task(send(i)))
        await asyncio.sleep({SPACING_S})

asyncio.run(main())
"""


def stored_ids(path: Path) -> set[int]:
    """Message ids in the database at ``path``, read by a fresh connection."""
    conn = sqlite3.connect(path)
    try:
        return {row[0] for row in conn.execute("SELECT id FROM messages")}
    finally:
        conn.close()


@pytest.mark.timeout(60)
async def test_kill9_right_after_answers_keeps_every_answered_write(tmp_path: Path) -> None:
    """kill -9 just after writes were answered (commit window on): every answered one is stored."""
    path = tmp_path / "hubbub.db"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(path), stdout=asyncio.subprocess.PIPE
    )
    assert child.stdout is not None
    answered: list[int] = []
    try:
        assert (await asyncio.wait_for(child.stdout.readline(), 30)).strip() == b"ready"
        while len(answered) < 20:
            line = await asyncio.wait_for(child.stdout.readline(), 10)
            answered.append(int(line))
        child.send_signal(signal.SIGKILL)
    finally:
        if child.returncode is None:
            child.kill()
        await child.wait()
    assert child.returncode == -signal.SIGKILL
    missing = set(answered) - stored_ids(path)
    assert not missing, f"answered but not stored after kill -9: {sorted(missing)}"


@pytest.mark.timeout(30)
async def test_write_in_a_commit_window_is_answered_only_once_committed(tmp_path: Path) -> None:
    """Writes gathered by the commit window are answered after their commit, not before."""
    path = tmp_path / "hubbub.db"
    store = SqliteStore(path, commit_window_s=WINDOW_S)
    await store.open()
    try:
        alice = await store.create_account("alice", "Alice", "x")
        bob = await store.create_account("bob", "Bob", "x")
        visible_at_answer: list[bool] = []
        commits_before = store.group_commits

        async def send(i: int) -> None:
            appended = await store.store_message(alice, bob, f"c{i}", "hi", datetime.now(UTC))
            visible_at_answer.append(appended.message_id in stored_ids(path))

        tasks = []
        for i in range(12):
            tasks.append(asyncio.create_task(send(i)))
            await asyncio.sleep(SPACING_S)
        await asyncio.gather(*tasks)
        assert visible_at_answer == [True] * 12
        assert store.group_commits - commits_before < 12  # the window did gather writes
    finally:
        await store.close()
