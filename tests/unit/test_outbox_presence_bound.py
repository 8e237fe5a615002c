"""Review attack: presence taken from the source does not count against the outbox bound."""

from __future__ import annotations

from typing import Any, cast

from hubbub.server.outbox import Outbox


def test_refilled_presence_leaves_the_whole_event_bound_to_queued_events() -> None:
    """After a refill of presence events (documented as never counted against the outbox's
    bounds), max_events queued events still fit: the client is not dropped earlier."""
    outbox = Outbox(max_events=8)
    given = [cast(Any, ("presence", i)) for i in range(2)]
    outbox.source = lambda: given
    outbox.refill()
    assert len(outbox) == 2
    accepted = [outbox.offer(cast(Any, ("message", i))) for i in range(8)]
    assert all(accepted), f"refused after {accepted.index(False)} of 8 messages"
