"""This node's presence feed: who is online, and every change, read per stream by cursor.

When a user's stream opens or closes, every other online user receives a presence
event (docs/protocol.md, "Presence"). Queuing one event per change per stream
costs O(N) per change and O(N²) for N connects, and a burst of connects fills
the streams' outboxes. The feed instead keeps, once for the whole node:

* the latest :class:`~hubbub.server.events.OutPresence` of every user seen (the
  change itself, shared by every stream that reads it);
* a log of ``(generation, username)`` in generation order; an entry whose user
  changed again later is *stale* and skipped (latest state wins);
* the online users, sorted by username, for Welcome, in chunks of a few hundred
  (:class:`OnlineUsers`): a chunk stays the same object until a user in it
  changes, so the transport encodes a Welcome from cached chunks.

Each stream holds one integer, the generation it has read up to, and reads the
users that changed since in chunks when its writer is idle (:meth:`read`). So a
change costs O(1) (amortised: the log is compacted when half of it is stale), a
stream never holds more than one pending change per user, and nothing is queued
per stream. Readers see changes up to :attr:`PresenceFeed.visible`, which
:class:`PresenceFanout` moves forward once per flush, so every idle stream is
woken once per flush, not once per change.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Protocol, overload

from .events import OutPresence
from .models import PresenceChange, UserView

PRESENCE_FLUSH_S = 0.05  # shortest wait from a change to the flush that publishes it, s
PRESENCE_FLUSH_MAX_S = 1.0  # longest such wait (with many live streams), s
PRESENCE_FLUSH_PER_STREAM_S = 100e-6  # the wait grows by this per live stream, s
ONLINE_CHUNK = 256  # online users per chunk of the Welcome list (split at twice this)


class OnlineUsers(Sequence[UserView]):
    """The online users sorted by username, as consecutive chunks (tuples). A chunk is
    the same tuple object in every snapshot until a user in it changes.

    Attributes:
        chunks: the users, in order, chunk by chunk.
    """

    __slots__ = ("_flat", "chunks")

    def __init__(self, chunks: tuple[tuple[UserView, ...], ...]) -> None:
        self.chunks = chunks
        self._flat: list[UserView] | None = None

    def __len__(self) -> int:
        return sum(len(chunk) for chunk in self.chunks)

    def __iter__(self) -> Iterator[UserView]:
        for chunk in self.chunks:
            yield from chunk

    @overload
    def __getitem__(self, index: int) -> UserView: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[UserView]: ...

    def __getitem__(self, index: int | slice) -> UserView | Sequence[UserView]:
        if self._flat is None:
            self._flat = list(self)
        return self._flat[index]


class PresenceFeed:
    """Latest presence per user, the online list and a change log read by cursor.

    Generations start at 0 (nothing applied) and grow by one per applied change.
    """

    __slots__ = (
        "_chunk_last",
        "_chunk_names",
        "_chunk_views",
        "_latest",
        "_log_gens",
        "_log_names",
        "_online",
        "_online_cache",
        "generation",
        "visible",
    )

    def __init__(self) -> None:
        self._latest: dict[str, tuple[int, OutPresence]] = {}  # username → (generation, event)
        self._log_gens: list[int] = []  # generation of each log entry, increasing
        self._log_names: list[str] = []  # username of each log entry
        self._online: dict[str, UserView] = {}  # online users (bots included) → their view
        # the keys of _online, sorted, in chunks of at most 2 * ONLINE_CHUNK; the last
        # name of each chunk (to find a name's chunk); each chunk's views (None: stale)
        self._chunk_names: list[list[str]] = []
        self._chunk_last: list[str] = []
        self._chunk_views: list[tuple[UserView, ...] | None] = []
        self._online_cache: OnlineUsers | None = None
        self.generation = 0  # of the last applied change
        self.visible = 0  # readers see changes up to this generation

    def add_bots(self, bots: Iterable[UserView]) -> None:
        """List always-online users (bots) in :meth:`online`; they never change."""
        for view in bots:
            self._set_online(view)

    def apply(self, change: PresenceChange) -> bool:
        """Record ``change`` as the user's latest presence; False (nothing recorded) if it
        equals the latest one already recorded (the same change delivered twice, e.g. a
        node's own change coming back through the broker)."""
        name = change.user.username
        current = self._latest.get(name)
        if current is not None and current[1].change == change:
            return False
        self.generation += 1
        self._latest[name] = (self.generation, OutPresence(change))
        self._log_gens.append(self.generation)
        self._log_names.append(name)
        if change.user.online:
            self._set_online(change.user)
        elif self._online.pop(name, None) is not None:
            self._remove_name(name)
            self._online_cache = None
        if len(self._log_gens) > 2 * len(self._latest) + 64:
            self._compact()
        return True

    def _set_online(self, view: UserView) -> None:
        if view.username in self._online:
            self._chunk_views[self._chunk_of(view.username)] = None
        else:
            self._insert_name(view.username)
        self._online[view.username] = view
        self._online_cache = None

    def _chunk_of(self, name: str) -> int:
        """Index of the chunk that holds ``name`` or would hold it (there is one)."""
        return min(bisect.bisect_left(self._chunk_last, name), len(self._chunk_last) - 1)

    def _insert_name(self, name: str) -> None:
        if not self._chunk_names:
            self._chunk_names.append([name])
            self._chunk_last.append(name)
            self._chunk_views.append(None)
            return
        i = self._chunk_of(name)
        names = self._chunk_names[i]
        bisect.insort(names, name)
        self._chunk_views[i] = None
        if len(names) > 2 * ONLINE_CHUNK:  # split in two
            tail = names[ONLINE_CHUNK:]
            del names[ONLINE_CHUNK:]
            self._chunk_names.insert(i + 1, tail)
            self._chunk_last.insert(i + 1, tail[-1])
            self._chunk_views.insert(i + 1, None)
        self._chunk_last[i] = names[-1]

    def _remove_name(self, name: str) -> None:
        i = self._chunk_of(name)
        names = self._chunk_names[i]
        del names[bisect.bisect_left(names, name)]
        if names:
            self._chunk_last[i] = names[-1]
            self._chunk_views[i] = None
        else:
            del self._chunk_names[i], self._chunk_last[i], self._chunk_views[i]

    def _compact(self) -> None:
        """Drop stale log entries (a later entry of the same user exists); a reader's
        cursor stays valid: the entries it has not read yet keep their generations."""
        latest = self._latest
        kept = [
            (gen, name)
            for gen, name in zip(self._log_gens, self._log_names, strict=True)
            if latest[name][0] == gen
        ]
        self._log_gens = [gen for gen, _ in kept]
        self._log_names = [name for _, name in kept]

    def publish(self) -> None:
        """Let readers see every change applied so far."""
        self.visible = self.generation

    def online(self) -> OnlineUsers:
        """The online users (bots included) sorted by username: the same object until the
        next change, and each of its chunks the same tuple until a user in it changes.
        O(chunks + users of the changed chunks)."""
        if self._online_cache is None:
            online = self._online
            chunks: list[tuple[UserView, ...]] = []
            for i, views in enumerate(self._chunk_views):
                if views is None:
                    views = self._chunk_views[i] = tuple(online[n] for n in self._chunk_names[i])
                chunks.append(views)
            self._online_cache = OnlineUsers(tuple(chunks))
        return self._online_cache

    def changed_after(self, username: str, generation: int) -> bool:
        """True if ``username`` changed after ``generation``."""
        latest = self._latest.get(username)
        return latest is not None and latest[0] > generation

    def is_online(self, username: str) -> bool:
        """True if ``username`` is online as far as this node knows."""
        return username in self._online

    def read(self, after: int, limit: int, skip: str = "") -> tuple[list[OutPresence], int]:
        """The latest change of each user that changed after generation ``after`` (up to
        :attr:`visible`), oldest first, at most ``limit`` of them, leaving out the user
        ``skip`` (a stream's own user); and the generation to pass as ``after`` next time.

        A user that changed several times since ``after`` appears once, with its latest
        change. Reading is O(entries read + stale entries skipped).
        """
        gens, names, latest = self._log_gens, self._log_names, self._latest
        upto = self.visible
        i = bisect.bisect_right(gens, after)
        end = len(gens)
        out: list[OutPresence] = []
        while i < end and len(out) < limit:
            gen = gens[i]
            if gen > upto:
                break
            name = names[i]
            current_gen, event = latest[name]
            if current_gen == gen and name != skip:
                out.append(event)
            after = gen
            i += 1
        if len(out) < limit:  # everything visible was read
            after = max(after, upto)
        return out, after


class PresenceFollower(Protocol):
    """A live stream that reads the feed (:class:`~hubbub.server.session.ChatSession`)."""

    def presence_published(self) -> None:
        """The feed published changes: take the first of them now if the writer is idle."""
        ...


class PresenceFanout:
    """Presence changes to this node's streams, through one :class:`PresenceFeed`.

    A change is recorded at once (O(1)); a flush, scheduled by the first change after
    the previous one, publishes everything recorded since and tells each stream
    (O(streams) per flush, not per change). The wait before a flush is
    ``PRESENCE_FLUSH_S`` (50 ms), growing with the number of live streams by
    ``PRESENCE_FLUSH_PER_STREAM_S`` each up to ``PRESENCE_FLUSH_MAX_S`` (1 s at
    10,000 streams), so writing presence takes a bounded share of the node during a
    burst of connects: a stream gets the changes of one flush in one go (one frame
    with batching).

    Args:
        followers: the live streams by username (the hub's sessions; read at each flush).
    """

    def __init__(self, followers: Mapping[str, PresenceFollower]) -> None:
        self.feed = PresenceFeed()
        self._followers = followers
        self._flush: asyncio.TimerHandle | None = None

    def apply(self, change: PresenceChange) -> None:
        """Record ``change`` and schedule the flush that publishes it (needs a running loop)."""
        if self.feed.apply(change) and self._flush is None:
            delay = min(
                PRESENCE_FLUSH_MAX_S,
                max(PRESENCE_FLUSH_S, len(self._followers) * PRESENCE_FLUSH_PER_STREAM_S),
            )
            self._flush = asyncio.get_running_loop().call_later(delay, self.flush)

    def flush(self) -> None:
        """Publish every recorded change to the streams now."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        self.feed.publish()
        for follower in self._followers.values():
            follower.presence_published()

    def close(self) -> None:
        """Cancel a scheduled flush (the node is stopping)."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
