"""The presence interface: who has a live Chat stream, claimed atomically per user.

A claim names its *holder*: an opaque id of the stream that holds it (the hub uses
the SHA-256 of the stream's resume token). A claim can be taken over at once by a
stream that shows the current holder's id (a client reconnecting to its own stale
stream), or when the node holding it is dead; otherwise a second claim is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of :meth:`PresenceRegistry.claim`.

    Attributes:
        granted: the caller now holds the user's presence.
        replaced: holder id of the claim this one replaced ("" if the user was offline);
            its stream must end (taken over), wherever it runs.
        replaced_local: the replaced claim was held by this node.
    """

    granted: bool
    replaced: str = ""
    replaced_local: bool = False


LostClaimHandler = Callable[[str, str], None]
"""Called with (username, holder id) when a claim this node held was taken by another
stream while the node was counted dead; that holder's stream must end (taken over).
An exception it raises is logged and does not stop the registry (its heartbeat)."""


class PresenceRegistry(Protocol):
    """Online users across the deployment (memory for one node, Redis for many)."""

    def on_claim_lost(self, handler: LostClaimHandler) -> None:
        """Call ``handler`` for every claim of this node found taken by another stream."""
        ...

    async def claim(self, username: str, at: datetime, holder: str, takeover: str = "") -> Claim:
        """Mark ``username`` online, held by ``holder``.

        Granted if nobody holds the user, if the holding node is dead, or if
        ``takeover`` is non-empty and equals the current holder (one live stream per
        user; the replaced holder is reported so its stream is ended). Atomic across
        nodes.
        """
        ...

    async def release(self, username: str, at: datetime, holder: str) -> bool:
        """Mark ``username`` offline if ``holder`` still holds it; True if it did."""
        ...

    async def is_online(self, username: str) -> bool:
        """True if ``username`` has a live stream on a live node."""
        ...

    async def is_online_many(self, usernames: Collection[str]) -> set[str]:
        """The subset of ``usernames`` that :meth:`is_online` would report online, looked up
        at once (Redis: one round trip whatever their number; none for no names)."""
        ...

    async def online(self) -> dict[str, datetime]:
        """Online usernames (on live nodes) mapped to when they came online."""
        ...

    async def sweep(self) -> list[tuple[str, datetime]]:
        """Users that went offline because their node died, with the time noticed; their
        claims are released. Each is returned to exactly one caller, which announces it."""
        ...

    @property
    def shared(self) -> bool:
        """True if other nodes claim in this registry too (then a node's hub rechecks its
        presence feed against :meth:`online` when a stream opens); False if every claim
        is made by this process, so the hub's feed is exact."""
        ...

    @property
    def sweep_interval_s(self) -> float | None:
        """How often to call :meth:`sweep`, seconds; None if claims never outlive a node."""
        ...

    async def last_change(self) -> dict[str, datetime]:
        """Every known username mapped to its last presence change."""
        ...
