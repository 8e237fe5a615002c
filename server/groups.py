"""Groups: create, add members, leave, list; every change is announced to the group.

Group names follow the username rules (RFC 8265 UsernameCaseMapped, 3-32 of
letters, digits, ``_ . -``) in their own namespace; a leading ``#`` is accepted
and dropped. Announcements are inbox entries, delivered with the same
sequence/ack/resume guarantees as messages.
"""

from __future__ import annotations

from . import usernames
from .errors import HubbubError, InvalidArgument, UserNotFound
from .hub import Hub
from .models import Account, Group, utc_now

MAX_MEMBERS = 1000


def group_name(raw: str, *, field: str = "name") -> str:
    """Canonical group name.

    Raises:
        InvalidArgument: the name breaks the naming rules (violation on ``field``).
    """
    try:
        return usernames.canonical(raw.removeprefix("#"))
    except HubbubError as error:
        detail = error.violations[0].description if error.violations else error.message
        raise InvalidArgument.for_field(field, detail) from None


class GroupService:
    """Group membership over the hub's store, announcing changes through the hub."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.store = hub.store

    async def _accounts(self, names: list[str], field: str) -> list[Account]:
        if len(names) > MAX_MEMBERS:
            raise InvalidArgument.for_field(field, f"at most {MAX_MEMBERS} members")
        found = []
        for raw in names:
            account = await self.hub.find_account(raw)
            if account is None:
                raise UserNotFound(f"The user '{raw}' does not exist.")
            found.append(account)
        return found

    async def create(self, creator: Account, name: str, members: list[str]) -> Group:
        """Create a group of ``creator`` and ``members``.

        Raises:
            InvalidArgument: bad name. UserNotFound: a member does not exist (named).
            GroupNameTaken: the name exists.
        """
        canonical = group_name(name)
        accounts = await self._accounts(members, "members")
        group, update = await self.store.create_group(canonical, creator, accounts, utc_now())
        await self.hub.publish(update.entries)
        return group

    async def add(self, actor: Account, name: str, members: list[str]) -> Group:
        """Add ``members`` to a group ``actor`` belongs to.

        Raises:
            GroupNotFound, NotGroupMember, UserNotFound, InvalidArgument.
        """
        canonical = usernames.group_reference(name)
        if not members:
            raise InvalidArgument.for_field("members", "name at least one user to add")
        accounts = await self._accounts(members, "members")
        group, update = await self.store.add_members(canonical, actor, accounts, utc_now())
        if update is not None:
            await self.hub.publish(update.entries)
        return group

    async def leave(self, account: Account, name: str) -> None:
        """Remove ``account`` from the group.

        Raises:
            GroupNotFound, NotGroupMember.
        """
        update = await self.store.leave_group(usernames.group_reference(name), account, utc_now())
        await self.hub.publish(update.entries)

    async def list(self, account: Account) -> list[Group]:
        """The groups ``account`` belongs to."""
        return await self.store.list_groups(account)
