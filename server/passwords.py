"""Password hashing with argon2id (argon2-cffi defaults: RFC 9106 low-memory profile).

Hashing and verification run in a thread pool so the event loop never blocks
(OWASP Password Storage Cheat Sheet). Unknown users are checked against a dummy
hash so that both failure paths take about the same time.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .errors import InvalidPassword

MIN_LENGTH = 8
MAX_LENGTH = 1024
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


class PasswordHashing:
    """Async argon2id hashing off the event loop.

    Args:
        hasher: the argon2-cffi hasher (defaults: t=3, m=64 MiB, p=4).
        workers: threads for hashing; each hash uses ``hasher.memory_cost`` KiB.
    """

    def __init__(self, hasher: PasswordHasher | None = None, workers: int = 2) -> None:
        self._hasher = hasher or PasswordHasher()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2")
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        """Return an encoded argon2id hash of ``password``."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._hasher.hash, password)

    async def verify(self, encoded: str | None, password: str) -> bool:
        """True if ``password`` matches ``encoded``; ``None`` checks a dummy hash and fails."""
        if self._dummy is None:
            self._dummy = await self.hash("hubbub-dummy-password")
        target = encoded if encoded and encoded != UNUSABLE_HASH else self._dummy
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(self._pool, self._verify, target, password)
        return ok and target is encoded

    def _verify(self, encoded: str, password: str) -> bool:
        try:
            return self._hasher.verify(encoded, password)
        except (VerificationError, InvalidHashError):
            return False

    def close(self) -> None:
        """Stop the worker threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)
