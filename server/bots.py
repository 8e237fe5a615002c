"""Built-in bots (echobot), a local client of the hub.

The node that stores a message for a bot answers it (:meth:`Hub.publish` queues
the entry here instead of publishing it), so with several nodes a bot works once
per message, not once per node. A bot sends through the hub's send pipeline and
acks what it read, like any client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from .errors import HubbubError, UsernameTaken
from .models import Account, EntryKind, StoredMessage
from .passwords import UNUSABLE_HASH
from .session import FILL_BATCH

if TYPE_CHECKING:
    from .hub import Hub

log = logging.getLogger(__name__)

ECHOBOT = "echobot"
BOTS_IDLE_WAIT_S = 2.0  # longest wait for the bots' answers when a stream half-closes


class Bots:
    """The bots of one hub (:attr:`Hub.bots`): their accounts and one queue of inbox
    entries to answer, worked by one task.

    Args:
        hub: the hub the bots send and ack through.
    """

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.accounts: dict[str, Account] = {}  # canonical username -> bot account
        self.queue: asyncio.Queue[StoredMessage] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def create(self) -> Account:
        """Create echobot's account if it does not exist yet; echobot's account."""
        store = self.hub.store
        echobot = await store.get_account(ECHOBOT)
        if echobot is None:
            try:
                echobot = await store.create_account(ECHOBOT, "Echo Bot", UNUSABLE_HASH, bot=True)
            except UsernameTaken:  # another node starting at the same time created it
                echobot = await store.get_account(ECHOBOT)
                assert echobot is not None
        self.accounts[ECHOBOT] = echobot
        return echobot

    def start(self) -> None:
        """Start the task that answers queued entries."""
        self.task = asyncio.create_task(self._run(), name="bots")

    async def catch_up(self, bot: Account) -> None:
        """Queue the entries stored for ``bot`` while no server was running."""
        store = self.hub.store
        cursor = await store.cursor(bot)
        after = cursor.acked_sequence
        while after < cursor.last_sequence:
            batch = await store.messages_after(bot, after, FILL_BATCH)
            if not batch:
                break
            for message in batch:
                self.queue.put_nowait(message)
            after = batch[-1].sequence

    async def wait_idle(self) -> None:
        """Wait until the bots answered what is queued, at most BOTS_IDLE_WAIT_S.

        ``asyncio.timeout`` rather than ``asyncio.wait_for``: on Python 3.11 the latter
        loses a cancellation that arrives as the queue empties (and a stream's cleanup
        then waited forever behind it).
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(BOTS_IDLE_WAIT_S):
                await self.queue.join()

    async def stop(self) -> None:
        """Let the bots answer what is queued (at most BOTS_IDLE_WAIT_S), then stop them."""
        if self.task is not None:
            await self.wait_idle()
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _run(self) -> None:
        while True:
            message = await self.queue.get()
            try:
                await self._reply(message)
            except asyncio.CancelledError:
                raise
            except HubbubError as error:
                log.info("echobot could not answer %s: %s", message.sender, error.message)
            except Exception:
                log.exception("echobot failed on message %d", message.message_id)
            finally:
                self.queue.task_done()

    async def _reply(self, message: StoredMessage) -> None:
        bot = self.accounts[message.recipient]
        direct_text = message.kind is EntryKind.TEXT and not message.group
        if direct_text and message.sender not in self.accounts:
            await self.hub.sending.send_direct(
                bot, message.sender, f"echo-{message.message_id}", message.body
            )
        await self.hub.store_ack(bot, message.sequence)
