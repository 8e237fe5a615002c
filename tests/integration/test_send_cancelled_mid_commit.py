"""Review attack: a send whose caller goes away mid-commit is still delivered live."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from hubbub.server.events import InSend

from .conftest import Node, open_chat, register_login

pytestmark = pytest.mark.timeout(60)

NodeFactory = Callable[..., Awaitable[Node]]


async def test_unary_send_cancelled_during_its_commit_still_reaches_the_online_recipient(
    node_factory: NodeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SendMessage cancelled (client deadline) while its commit is pending: the message is
    stored anyway, so the online recipient must get it live, not only after reconnecting."""
    node = await node_factory()
    hub = node.server.hub
    await register_login(node, "alice")
    bob_token = await register_login(node, "bob")
    bob = await open_chat(node, bob_token)
    await bob.next("synced")
    alice = await node.server.store.get_account("alice")
    assert alice is not None
    store = node.server.store
    queued = asyncio.Event()
    store_message = store.store_message

    def spy(*args: Any) -> Any:
        queued.set()
        return store_message(*args)

    monkeypatch.setattr(store, "store_message", spy)
    send = asyncio.create_task(hub.send(alice, InSend("c1", "bob", "hello")))
    await asyncio.wait_for(queued.wait(), 5)  # now awaiting the durable commit
    assert not send.done()
    send.cancel()  # the unary call's deadline passed (grpc cancels the handler)
    with pytest.raises(asyncio.CancelledError):
        await send
    bob_account = await node.server.store.get_account("bob")
    assert bob_account is not None
    for _ in range(100):  # the commit goes on without the cancelled caller
        if (await node.server.store.cursor(bob_account)).last_sequence == 1:
            break
        await asyncio.sleep(0.02)
    assert (await node.server.store.cursor(bob_account)).last_sequence == 1, "stored"
    message = (await bob.next("message", wait_s=3.0)).message
    assert message.body == "hello"
    await bob.close()
