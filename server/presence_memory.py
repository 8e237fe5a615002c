"""In-process presence registry for a single node."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from .presence import Claim, LostClaimHandler


class MemoryPresence:
    """:class:`~hubbub.server.presence.PresenceRegistry` held in a dict (one node: every
    claim is local and its node is alive while the process runs)."""

    def __init__(self) -> None:
        self._online: dict[str, tuple[datetime, str]] = {}  # username → (since, holder)
        self._changed: dict[str, datetime] = {}

    async def claim(self, username: str, at: datetime, holder: str, takeover: str = "") -> Claim:
        """Mark online unless another holder has it (unless ``takeover`` names that holder)."""
        current = self._online.get(username)
        if current is not None and not (takeover and current[1] == takeover):
            return Claim(False)
        self._online[username] = (at, holder)
        self._changed[username] = at
        if current is None:
            return Claim(True)
        return Claim(True, replaced=current[1], replaced_local=True)

    async def release(self, username: str, at: datetime, holder: str) -> bool:
        """Mark offline if ``holder`` holds the claim."""
        current = self._online.get(username)
        if current is None or current[1] != holder:
            return False
        del self._online[username]
        self._changed[username] = at
        return True

    async def is_online(self, username: str) -> bool:
        """True if ``username`` is online."""
        return username in self._online

    async def is_online_many(self, usernames: Collection[str]) -> set[str]:
        """The online ones of ``usernames``."""
        return {name for name in usernames if name in self._online}

    async def online(self) -> dict[str, datetime]:
        """Online usernames → since."""
        return {name: since for name, (since, _) in self._online.items()}

    async def sweep(self) -> list[tuple[str, datetime]]:
        """Nothing outlives its node in one process: every release is explicit."""
        return []

    def on_claim_lost(self, handler: LostClaimHandler) -> None:
        """Never called: one process never loses a claim it holds."""

    @property
    def shared(self) -> bool:
        """False: only this process claims."""
        return False

    @property
    def sweep_interval_s(self) -> float | None:
        """No sweeping needed."""
        return None

    async def last_change(self) -> dict[str, datetime]:
        """Usernames → last presence change."""
        return dict(self._changed)
