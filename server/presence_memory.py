"""In-process presence registry for a single node."""

from __future__ import annotations

from datetime import datetime


class MemoryPresence:
    """:class:`~hubbub.server.presence.PresenceRegistry` held in a dict."""

    def __init__(self) -> None:
        self._online: dict[str, datetime] = {}
        self._changed: dict[str, datetime] = {}

    async def claim(self, username: str, at: datetime) -> bool:
        """Mark online unless already online."""
        if username in self._online:
            return False
        self._online[username] = at
        self._changed[username] = at
        return True

    async def release(self, username: str, at: datetime) -> None:
        """Mark offline."""
        if self._online.pop(username, None) is not None:
            self._changed[username] = at

    async def is_online(self, username: str) -> bool:
        """True if ``username`` is online."""
        return username in self._online

    async def online(self) -> dict[str, datetime]:
        """Online usernames → since."""
        return dict(self._online)

    async def sweep(self) -> list[tuple[str, datetime]]:
        """Nothing expires in one process: every release is explicit."""
        return []

    @property
    def sweep_interval_s(self) -> float | None:
        """No sweeping needed."""
        return None

    async def last_change(self) -> dict[str, datetime]:
        """Usernames → last presence change."""
        return dict(self._changed)
