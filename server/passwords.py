"""Password hashing with argon2id (argon2-cffi defaults: RFC 9106 low-memory profile).

Hashing and verification run in a thread pool so the event loop never blocks
(OWASP Password Storage Cheat Sheet), at most one per core at a time, logins
before registrations (:class:`PasswordHashing`). Unknown users are checked against a dummy
hash so that both failure paths take about the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import heapq
import itertools
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .errors import InvalidPassword

MIN_LENGTH = 8
MAX_LENGTH = 1024
T = TypeVar("T")
UNUSABLE_HASH = "!"  # stored for accounts that cannot log in with a password (bots)


def check_policy(password: str) -> None:
    """Check length rules (OWASP: at least 8, allow long passphrases).

    Raises:
        InvalidPassword: shorter than 8 or longer than 1024 characters.
    """
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise InvalidPassword.for_field(
            "password", f"must be {MIN_LENGTH} to {MAX_LENGTH} characters long"
        )


HASH_THREAD_NICE = 10  # nice(2) increment of the threads that hash new passwords (Linux)


def _background_thread() -> None:
    """Lower the CPU priority of this worker thread (Linux: nice is per thread).

    When registrations and logins compete for the cores, the scheduler then gives
    the login's verification most of the CPU (CFS weight of nice 10 is ~1/10 of nice 0).
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASH_THREAD_NICE)


class Priority(enum.IntEnum):
    """Order of argon2 work when every slot is busy: lower values go first."""

    VERIFY = 0  # Login, UpdateProfile's current password: a person is waiting
    HASH = 1  # Register, a new password


class PriorityGate:
    """At most ``slots`` holders at once, at most ``hash_slots`` of them HASH work.

    Waiters are served by priority, then in arrival order. Keeping one slot out of
    the reach of HASH work (when there are two or more) means a login never waits
    behind a registration flood for more than the slot it shares.
    """

    def __init__(self, slots: int, hash_slots: int) -> None:
        self.slots = slots
        self.hash_slots = hash_slots
        self._busy = 0
        self._busy_hash = 0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    @property
    def waiting(self) -> int:
        """Waiters not yet served (including cancelled ones not yet skipped)."""
        return len(self._waiters)

    def _fits(self, priority: Priority) -> bool:
        if self._busy >= self.slots:
            return False
        return priority is Priority.VERIFY or self._busy_hash < self.hash_slots

    def _take(self, priority: Priority) -> None:
        self._busy += 1
        if priority is Priority.HASH:
            self._busy_hash += 1

    def release(self, priority: Priority) -> None:
        """Give a slot back and wake the waiters that now fit."""
        self._busy -= 1
        if priority is Priority.HASH:
            self._busy_hash -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            rank, _, future = self._waiters[0]
            if future.done():  # cancelled while waiting
                heapq.heappop(self._waiters)
                continue
            if not self._fits(Priority(rank)):
                return  # the best waiter does not fit; nothing behind it goes first
            heapq.heappop(self._waiters)
            self._take(Priority(rank))
            future.set_result(None)

    async def acquire(self, priority: Priority) -> None:
        """Wait for a slot (call :meth:`release` with the same priority afterwards)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (int(priority), next(self._arrivals), future))
        self._wake()  # granted at once when it fits and nobody better waits
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # granted just as we were cancelled
                self.release(priority)
            else:
                self._wake()
            raise


class PasswordHashing:
    """Async argon2id hashing off the event loop, bounded and prioritised.

    At most ``workers`` hashes or verifications run at once (default: one per
    core, :func:`os.cpu_count`); when all are busy, verifications (logins) are
    served before hashes (registrations), with two or more workers one is kept
    for verifications only, and hashing threads run at a lower CPU priority
    (Linux ``nice`` 10). So a flood of Register calls queues up behind itself
    while a Login waits at most for its own slot (OWASP Denial of Service
    Cheat Sheet: bound expensive work; Password Storage Cheat Sheet: argon2id).

    Args:
        hasher: the argon2-cffi hasher (defaults: t=3, m=64 MiB, p=4).
        workers: most concurrent argon2 computations; each uses
            ``hasher.memory_cost`` KiB of memory.
    """

    def __init__(self, hasher: PasswordHasher | None = None, workers: int | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        self.workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
        hash_slots = max(1, self.workers - 1)
        self._pools = {
            Priority.VERIFY: ThreadPoolExecutor(self.workers, thread_name_prefix="argon2-verify"),
            Priority.HASH: ThreadPoolExecutor(
                hash_slots, thread_name_prefix="argon2-hash", initializer=_background_thread
            ),
        }
        self._gate = PriorityGate(self.workers, hash_slots)
        self._dummy: str | None = None

    @property
    def waiting(self) -> int:
        """Hashes and verifications waiting for a worker."""
        return self._gate.waiting

    async def _run(self, priority: Priority, fn: Callable[..., T], *args: Any) -> T:
        await self._gate.acquire(priority)
        try:
            work = asyncio.get_running_loop().run_in_executor(self._pools[priority], fn, *args)
        except BaseException:
            self._gate.release(priority)
            raise
        # The slot is given back when the thread is done, even if our caller is
        # cancelled meanwhile (the thread cannot be stopped; it still uses a core).
        work.add_done_callback(lambda _: self._gate.release(priority))
        return await asyncio.shield(work)

    async def hash(self, password: str) -> str:
        """Return an encoded argon2id hash of ``password`` (low priority: registrations)."""
        return await self._run(Priority.HASH, self._hasher.hash, password)

    async def verify(self, encoded: str | None, password: str) -> bool:
        """True if ``password`` matches ``encoded``; ``None`` checks a dummy hash and fails.

        High priority: served before any waiting :meth:`hash`.
        """
        if self._dummy is None:
            self._dummy = await self._run(Priority.VERIFY, self._hasher.hash, "hubbub-dummy")
        target = encoded if encoded and encoded != UNUSABLE_HASH else self._dummy
        ok = await self._run(Priority.VERIFY, self._verify, target, password)
        return ok and target is encoded

    def _verify(self, encoded: str, password: str) -> bool:
        try:
            return self._hasher.verify(encoded, password)
        except (VerificationError, InvalidHashError):
            return False

    def close(self) -> None:
        """Stop the worker threads."""
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)
