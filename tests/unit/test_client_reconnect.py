"""Unit tests of how fast a Conversation reconnects (issue 9: a dead node's clients deliver
again within 5 s): the backoff steps once per round over the addresses, starts over after
every healthy stream, and a GoingAway never waits on a lingering stream."""

from __future__ import annotations

import random
import time

import pytest

from hubbub.client import ConnectionLost, Conversation, GoingAway, Reconnected, Synced
from hubbub.client.backoff import Backoff
from hubbub.client.target import parse_target

from .test_client_api import LOST, FakeChat, FakeClient, _welcome

pytestmark = pytest.mark.timeout(10)


class Chat(FakeChat):
    """A FakeChat that can be cancelled (as api.Chat can)."""

    cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Nodes(FakeClient):
    """A FakeClient with a target of ``count`` addresses."""

    def __init__(self, count: int, *opens: FakeChat | Exception) -> None:
        super().__init__(*opens)  # type: ignore[arg-type]
        self.target = parse_target([f"10.0.0.{n}:50051" for n in range(1, count + 1)])


def test_backoff_steps_once_per_round_of_addresses() -> None:
    """With three addresses, the first three attempts share the shortest delay, the next
    three the doubled one: a dead address is left at once for the next, and the delay only
    grows once every address has failed."""
    backoff = Backoff(base=0.25, factor=2.0, cap=4.0, rng=random.Random(5), per_round=3)
    delays = [backoff.next_delay() for _ in range(9)]
    for delay in delays[:3]:
        assert 0.125 <= delay <= 0.25
    for delay in delays[3:6]:
        assert 0.25 <= delay <= 0.5
    for delay in delays[6:]:
        assert 0.5 <= delay <= 1.0


async def test_a_synced_stream_starts_the_backoff_over() -> None:
    """Streams that drop before their replay completes keep the backoff growing; a stream
    that reached Synced (the node works) starts it over, however short-lived it was."""
    chats = [Chat(_welcome()) for _ in range(4)]
    conv = Conversation(
        Nodes(1, *chats),  # type: ignore[arg-type]
        backoff=Backoff(base=0.001, cap=0.05),
        stable_after=60.0,
    )
    await conv.start()
    for chat in chats[:3]:
        chat.play(LOST)
    assert isinstance(await anext(conv), ConnectionLost)
    for _ in range(2):
        assert isinstance(await anext(conv), Reconnected)
        assert isinstance(await anext(conv), ConnectionLost)
    assert isinstance(await anext(conv), Reconnected)
    assert conv.backoff.attempt == 3
    chats[3].play(Synced(0), LOST)
    assert isinstance(await anext(conv), Synced)
    assert isinstance(await anext(conv), ConnectionLost)
    assert conv.backoff.attempt == 0


async def test_the_backoff_round_is_the_number_of_addresses() -> None:
    """A Conversation over three addresses steps its backoff once per three attempts."""
    first = Chat(_welcome())
    conv = Conversation(Nodes(3, first), backoff=Backoff())  # type: ignore[arg-type]
    await conv.start()
    assert conv.backoff.per_round == 3


async def test_going_away_does_not_wait_for_the_old_stream_to_end() -> None:
    """After GoingAway (reconnect in 0.3 s) the old stream stays open: the Conversation waits
    the asked delay, cancels it and reconnects, instead of waiting for it to end."""
    first, second = Chat(_welcome()), Chat(_welcome())
    conv = Conversation(Nodes(2, first, second), backoff=Backoff(base=0.001, cap=0.01))  # type: ignore[arg-type]
    await conv.start()
    first.play(GoingAway("SERVER_SHUTDOWN", "bye", 300))
    assert isinstance(await anext(conv), ConnectionLost)
    started = time.monotonic()
    assert isinstance(await anext(conv), Reconnected)
    took = time.monotonic() - started
    assert 0.29 <= took <= 1.0, took
    assert first.half_closed and first.cancelled
