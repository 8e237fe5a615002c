"""Users as others see them: the hub's account cache, user views with presence, the
users list (AIP-158 pages) and the sweeper that announces a dead node's users offline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from . import paging, usernames
from .errors import HubbubError
from .models import Account, PresenceChange, UsersPage, UserView, utc_now

if TYPE_CHECKING:
    from .hub import Hub
    from .presence_feed import PresenceFanout

log = logging.getLogger(__name__)


class Users:
    """The account cache and user views of one hub (:attr:`Hub.users`).

    Args:
        hub: the hub whose store, presence, broker and bots are used.
    """

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.cache: dict[str, Account] = {}  # canonical username -> account

    async def account(self, username: str) -> Account | None:
        """The account with canonical ``username`` (cached), or None."""
        account = self.cache.get(username)
        if account is None:
            account = await self.hub.store.get_account(username)
            if account is not None:
                self.cache[username] = account
        return account

    async def find_account(self, raw: str) -> Account | None:
        """The account a user typed ``raw`` means (any case or width), or None; a name
        that breaks the username rules cannot exist, so it is None too."""
        try:
            name = usernames.canonical(raw)
        except HubbubError:
            return None
        return await self.account(name)

    async def user_view(self, account: Account) -> UserView:
        """``account`` as others see it, online if it has a live stream on any node."""
        online = account.bot or await self.hub.presence.is_online(account.username)
        return UserView(account.username, account.display_name, online, None, account.bot)

    async def list_users(
        self, online_only: bool, page_size: int = 0, page_token: str = ""
    ) -> UsersPage:
        """One page of users sorted by username, with presence; bots are always online.

        AIP-158 paging (:mod:`hubbub.server.paging`): ``page_size`` 0 means 100,
        more than 1000 is capped; the token continues after the last username of
        the previous page and is only valid with the same ``online_only``.

        Raises:
            InvalidArgument: a negative ``page_size`` or a bad ``page_token``.
        """
        size = paging.page_size(
            page_size, default=paging.USERS_DEFAULT_PAGE_SIZE, maximum=paging.USERS_MAX_PAGE_SIZE
        )
        key = f"online_only={online_only}"
        after = paging.decode_token("users", page_token, key)
        online = await self.hub.presence.online()
        changed = await self.hub.presence.last_change()
        if online_only:  # few: page over the online names instead of every account
            names = sorted(n for n in set(online) | set(self.hub.bots.accounts) if n > after)
            accounts = await self.accounts_named(names[:size])
            more = len(names) > size
        else:
            accounts = await self.hub.store.list_accounts(after=after, limit=size + 1)
            more = len(accounts) > size
        views = [self.view(a, online, changed) for a in accounts[:size]]
        more = more and bool(views)
        return UsersPage(
            views, paging.encode_token("users", views[-1].username, key) if more else ""
        )

    @staticmethod
    def view(
        account: Account, online: Mapping[str, datetime], changed: Mapping[str, datetime]
    ) -> UserView:
        """``account`` as others see it, given who is ``online`` and when each user's
        presence last ``changed``; bots are always online."""
        return UserView(
            username=account.username,
            display_name=account.display_name,
            online=account.bot or account.username in online,
            presence_changed_at=changed.get(account.username),
            bot=account.bot,
        )

    async def accounts_named(self, names: Iterable[str]) -> list[Account]:
        """The accounts of ``names`` (canonical usernames), sorted by name; unknown names
        are left out."""
        found = [await self.account(n) for n in sorted(names)]
        return [a for a in found if a is not None]

    async def sync_presence(self, fanout: PresenceFanout) -> None:
        """Bring this node's presence feed in line with the shared registry (with several
        nodes a change published by another node may not have reached this one yet, or
        was missed while the broker was disconnected): users the registry shows online
        are recorded online, users it does not are recorded offline. A change the feed
        records while the registry is read is newer and wins."""
        feed = fanout.feed
        start = feed.generation
        online = await self.hub.presence.online()
        changed = await self.hub.presence.last_change()
        now = utc_now()
        for view in feed.online():
            name = view.username
            if view.bot or name in online or feed.changed_after(name, start):
                continue
            at = changed.get(name, now)
            gone = UserView(name, view.display_name, False, at, False)
            fanout.apply(PresenceChange(gone, at))
        missing = [name for name in online if not feed.is_online(name)]
        for account in await self.accounts_named(missing):
            name = account.username
            if feed.changed_after(name, start):
                continue
            at = changed.get(name, online[name])
            fanout.apply(PresenceChange(UserView(name, account.display_name, True, at, False), at))

    async def sweep_presence(self, interval_s: float) -> None:
        """Announce users whose node died (their presence claim expired) as offline."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                for username, at in await self.hub.presence.sweep():
                    account = await self.account(username)
                    shown = account.display_name if account else username
                    view = UserView(username, shown, False, at, False)
                    await self.hub.broker.publish_presence(PresenceChange(view, at))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("presence sweep failed; retrying in %.1f s", interval_s)
