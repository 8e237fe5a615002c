"""The presence interface: who has a live Chat stream, claimed atomically per user."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class PresenceRegistry(Protocol):
    """Online users across the deployment (memory for one node, Redis for many)."""

    async def claim(self, username: str, at: datetime) -> bool:
        """Mark ``username`` online; False if it already is (one live stream per user)."""
        ...

    async def release(self, username: str, at: datetime) -> None:
        """Mark ``username`` offline."""

    async def is_online(self, username: str) -> bool:
        """True if ``username`` has a live stream on any node."""
        ...

    async def online(self) -> dict[str, datetime]:
        """Online usernames mapped to when they came online."""
        ...

    async def sweep(self) -> list[tuple[str, datetime]]:
        """Users that went offline because their node died (claims expired), with the
        time noticed. Each is returned to exactly one caller, so the caller announces it."""
        ...

    @property
    def sweep_interval_s(self) -> float | None:
        """How often to call :meth:`sweep`, seconds; None if claims never expire."""
        ...

    async def last_change(self) -> dict[str, datetime]:
        """Every known username mapped to its last presence change."""
        ...
