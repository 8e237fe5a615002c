"""Review attack: CommitPublisher answers every waiting send when a flush fails."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from typing import Any, cast

import pytest

from hubbub.server.sending import CommitPublisher

pytestmark = pytest.mark.timeout(10)


class _Presence:
    async def is_online_many(self, names: Collection[str]) -> set[str]:
        await asyncio.sleep(0)
        return set(names)


class _FailingHub:
    """A hub whose publish fails after a loop pass."""

    def __init__(self) -> None:
        self.presence = _Presence()
        self.published: list[Sequence[Any]] = []

    async def publish(self, entries: Sequence[Any]) -> None:
        await asyncio.sleep(0)
        self.published.append(entries)
        raise ConnectionError("broker down")


async def test_a_failed_flush_fails_every_waiting_send() -> None:
    """Sends sharing a failed flush all get its error (none left hanging), even when one of
    them was cancelled meanwhile; the entries are still handed over once."""
    hub = _FailingHub()
    publisher = CommitPublisher(cast(Any, hub))
    sends = [
        asyncio.create_task(publisher.publish_and_check([cast(Any, i)], ["bob"] if i else []))
        for i in range(3)
    ]
    await asyncio.sleep(0)
    sends[1].cancel()
    _, pending = await asyncio.wait(sends, timeout=2)
    assert not pending
    assert sends[1].cancelled()
    for task in (sends[0], sends[2]):
        with pytest.raises(ConnectionError):
            task.result()
    assert hub.published == [[0, 1, 2]]
