"""The network side of the full-screen client: connecting, logging in, the saved
session, the live chat (`hubbub.client.Conversation`: reconnect, resume, resend, nothing shown
twice) and the history pages the sidebar and the message pane need.

Nothing here knows Textual; the screens call these coroutines in workers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final

from ..backoff import Backoff
from ..client import Client
from ..conversation import Conversation
from ..errors import HubbubError
from ..events import HistoryPage, LoginResult, UserInfo
from ..session_store import SavedSession, SessionFileError, load_session, save_session
from .conversations import ConversationKey
from .model import ChatState

#: Makes a connected, not yet logged-in `Client` (the CLI passes one that knows the
#: server addresses and TLS settings). Raises HubbubError(UNAVAILABLE) if unreachable.
ClientFactory = Callable[[], Awaitable[Client]]

#: Messages per history page the pane loads when scrolled to the top.
HISTORY_PAGE: Final = 50

#: At most this many conversations are probed for their last message at start-up,
#: this many at a time.
PROBE_LIMIT: Final = 200
PROBE_CONCURRENCY: Final = 4


@dataclass
class ObservedBackoff(Backoff):
    """`Backoff` that reports each delay (seconds) it hands out to `on_delay`, so
    the status bar can say when the next reconnect attempt is."""

    on_delay: Callable[[float], None] | None = None

    def next_delay(self) -> float:
        """The next delay (seconds), also passed to `on_delay`."""
        delay = super().next_delay()
        if self.on_delay is not None:
            self.on_delay(delay)
        return delay


def usable_saved_session(
    server: str, now: datetime, path: Path | None = None
) -> SavedSession | None:
    """The saved login (session_store) if it is for `server` and not expired, else None
    (also when the file is damaged)."""
    try:
        saved = load_session(path)
    except SessionFileError:
        return None
    if saved is None or saved.server != server or saved.expired(now):
        return None
    return saved


def remember(server: str, result: LoginResult, path: Path | None = None) -> None:
    """Save a login for the next start (mode 0600, see session_store); errors ignored."""
    with contextlib.suppress(OSError):
        save_session(
            SavedSession(server, result.user.username, result.token, result.expire_time), path
        )


@dataclass
class ChatSession:
    """A logged-in client and its live chat.

    `password` is kept (in memory only) when the user typed it, so that a refused
    token after a reconnect is answered by logging in again (as the line-mode client
    does); a session resumed from the saved token has none.
    """

    client: Client
    password: str | None = None
    #: The reconnect backoff; set `backoff.on_delay` to hear of each retry delay.
    backoff: ObservedBackoff = field(default_factory=ObservedBackoff)
    conversation: Conversation | None = None
    _closed: bool = field(default=False, init=False)

    async def start(self) -> UserInfo:
        """Open the chat stream and resume after what the server has as acknowledged.

        Returns me. Raises HubbubError: UNAUTHENTICATED (token refused),
        ALREADY_EXISTS (logged in elsewhere), RESOURCE_EXHAUSTED (server full), UNAVAILABLE.
        """
        conversation = Conversation(self.client, password=self.password, backoff=self.backoff)
        welcome = await conversation.start()
        self.conversation = conversation
        if not self.client.username:
            self.client.username = welcome.user.username
        return welcome.user

    async def bootstrap(self, state: ChatState) -> None:
        """Fill `state` with my groups, every user (presence, display names) and, per
        conversation, its newest message (for the order by last activity).

        Conversations with no message are left out, except groups. Errors are raised
        as HubbubError.
        """
        groups = await self.client.list_groups()
        state.set_groups((g.name, g.members) for g in groups)
        users = await self.client.list_users()
        state.set_users(users)
        probes: list[tuple[ConversationKey, str]] = [
            (ConversationKey.group(g.name), g.name) for g in groups
        ]
        probes += [
            (ConversationKey.user(u.username), u.username)
            for u in users
            if u.username.casefold() != state.me.casefold()
        ]
        limit = asyncio.Semaphore(PROBE_CONCURRENCY)

        async def probe(key: ConversationKey, title: str) -> None:
            async with limit:
                try:
                    page = await self.history(key, "", page_size=1)
                except HubbubError:
                    return
            if page.messages or key.kind == "group":
                state.conversation(key, title)
                state.add_history(key, page.messages, page.next_page_token)

        await asyncio.gather(*(probe(k, t) for k, t in probes[:PROBE_LIMIT]))

    async def history(
        self, key: ConversationKey, token: str, page_size: int = HISTORY_PAGE
    ) -> HistoryPage:
        """One ListHistory page of `key` (newest first), older than `token` ("" newest)."""
        if key.kind == "group":
            return await self.client.list_history(
                group=key.name, page_size=page_size, page_token=token
            )
        return await self.client.list_history(
            username=key.name, page_size=page_size, page_token=token
        )

    async def close(self) -> None:
        """Half-close the chat (pending acks reach the server) and close the channel."""
        if self._closed:
            return
        self._closed = True
        if self.conversation is not None:
            with contextlib.suppress(HubbubError, asyncio.TimeoutError):
                await asyncio.wait_for(self.conversation.close(), 3)
        await self.client.close()
