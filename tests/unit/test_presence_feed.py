"""The presence feed: latest state per user, coalesced reads by cursor, the sorted online list."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hubbub.server.models import PresenceChange, UserView
from hubbub.server.presence_feed import ONLINE_CHUNK, PresenceFeed

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def change(name: str, online: bool, second: int = 0) -> PresenceChange:
    """A presence change of ``name`` at T0 + ``second`` s."""
    at = T0 + timedelta(seconds=second)
    return PresenceChange(UserView(name, name.title(), online, at, False), at)


def read_all(feed: PresenceFeed, after: int, skip: str = "") -> tuple[list[tuple[str, bool]], int]:
    """Every visible change after ``after`` as (username, online), and the next cursor."""
    events, cursor = feed.read(after, 1_000_000, skip)
    return [(e.change.user.username, e.change.user.online) for e in events], cursor


def test_a_burst_reads_as_the_latest_state_of_each_user() -> None:
    """A reader gets one entry per user that changed, with its latest state, oldest first."""
    feed = PresenceFeed()
    for i, (name, online) in enumerate(
        [("bob", True), ("carol", True), ("bob", False), ("dave", True), ("bob", True)]
    ):
        assert feed.apply(change(name, online, i))
    feed.publish()
    assert read_all(feed, 0) == ([("carol", True), ("dave", True), ("bob", True)], 5)


def test_reads_continue_from_the_cursor_and_skip_the_readers_own_user() -> None:
    """A cursor only sees later changes; ``skip`` leaves out the reader's own user."""
    feed = PresenceFeed()
    feed.apply(change("bob", True))
    feed.publish()
    seen, cursor = read_all(feed, 0)
    assert seen == [("bob", True)]
    feed.apply(change("alice", True, 1))
    feed.apply(change("bob", False, 2))
    feed.publish()
    assert read_all(feed, cursor, skip="alice") == ([("bob", False)], 3)
    assert read_all(feed, 3) == ([], 3)


def test_changes_are_invisible_until_published() -> None:
    """Readers see changes only up to the last publish (one wake-up per flush)."""
    feed = PresenceFeed()
    feed.apply(change("bob", True))
    assert read_all(feed, 0) == ([], 0)
    feed.publish()
    feed.apply(change("carol", True, 1))
    assert read_all(feed, 0) == ([("bob", True)], 1)


def test_reads_in_chunks_resume_where_they_stopped() -> None:
    """``limit`` bounds one read; the returned cursor continues after the last entry read."""
    feed = PresenceFeed()
    names = [f"u{i:03}" for i in range(10)]
    for i, name in enumerate(names):
        feed.apply(change(name, True, i))
    feed.publish()
    got: list[str] = []
    cursor = 0
    while True:
        events, cursor = feed.read(cursor, 3)
        if not events:
            break
        got += [e.change.user.username for e in events]
    assert got == names and cursor == 10


def test_the_same_change_twice_is_recorded_once() -> None:
    """A change equal to the user's latest (e.g. echoed by the broker) is not a new entry."""
    feed = PresenceFeed()
    assert feed.apply(change("bob", True))
    assert not feed.apply(change("bob", True))
    assert feed.generation == 1


def test_online_list_is_sorted_with_bots_and_follows_changes() -> None:
    """online() lists bots and online users by username; it is cached until a change."""
    feed = PresenceFeed()
    feed.add_bots([UserView("echobot", "Echo Bot", True, None, True)])
    for i, name in enumerate(["zoe", "bob", "mia"]):
        feed.apply(change(name, True, i))
    first = feed.online()
    assert [u.username for u in first] == ["bob", "echobot", "mia", "zoe"]
    assert feed.online() is first
    feed.apply(change("mia", False, 5))
    assert [u.username for u in feed.online()] == ["bob", "echobot", "zoe"]
    assert feed.is_online("bob") and not feed.is_online("mia")


def test_log_stays_bounded_and_lagging_cursors_stay_correct() -> None:
    """Many changes of few users keep the log O(users); a cursor from before the
    compaction still reads the latest state of every user changed since."""
    feed = PresenceFeed()
    feed.apply(change("early", True))
    feed.publish()
    lagging = 1
    last: dict[str, bool] = {}
    for i in range(10_001):
        name, online = f"u{i % 5}", i % 3 == 0
        feed.apply(change(name, online, i + 1))
        last[name] = online
    feed.publish()
    assert len(feed._log_gens) <= 2 * 6 + 64
    seen, _ = read_all(feed, lagging)
    assert sorted(seen) == sorted(last.items())


def test_online_chunks_stay_sorted_and_only_the_changed_chunk_is_rebuilt() -> None:
    """Thousands of users in random order: online() is sorted; after one change every
    chunk but the one holding that user is the same tuple object as before."""
    feed = PresenceFeed()
    names = [f"user{i:05}" for i in range(3000)]
    for i in random.Random(7).sample(range(3000), 3000):
        feed.apply(change(names[i], True, i))
    for name in names[::7]:
        feed.apply(change(name, False, 5000))
    before = feed.online()
    expected = [n for i, n in enumerate(names) if i % 7]
    assert [u.username for u in before] == expected
    assert len(before) == len(expected) and before[3].username == expected[3]
    assert max(len(c) for c in before.chunks) <= 2 * ONLINE_CHUNK
    feed.apply(change("user01500", False, 6000))
    after = feed.online()
    changed = [a is not b for a, b in zip(before.chunks, after.chunks, strict=True)]
    assert changed.count(True) == 1
    assert "user01500" not in [u.username for u in after]
