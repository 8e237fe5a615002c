"""Groups: membership, announcements (GROUP_UPDATE entries) and group messages."""

from __future__ import annotations

import uuid

from .errors import (
    GroupNameTaken,
    GroupNotFound,
    NotGroupMember,
)
from .models import (
    Account,
    Appended,
    EntryKind,
    Group,
    GroupAction,
)
from .sql import Dialect, Op, execute, many, rows, value
from .store_ops_inbox import NewEntry, accounts_by_name, append
from .store_ops_mapping import (
    GROUP_SELECT,
    groups_of,
)


def store_group_message(
    d: Dialect, sender: Account, group: str, client_id: str, body: str, sent_ms: int
) -> Op[Appended]:
    """A group message into every other member's inbox.

    Raises:
        GroupNotFound, NotGroupMember: as the names say.
    """
    found = yield from member_group(d, group, sender)
    others = tuple(m for m in found.members if m != sender.username)
    return (
        yield from append(
            d,
            NewEntry(
                sender,
                (yield from accounts_by_name(d, others)),
                client_id,
                body,
                sent_ms,
                group=found,
            ),
        )
    )


# -- groups -------------------------------------------------------------------------------


def get_group(d: Dialect, name: str, *, lock: bool = False) -> Op[Group | None]:
    """The group named ``name`` (members sorted), or None; ``lock`` serialises membership
    changes of the group on PostgreSQL."""
    if lock and d.concurrent_writers:
        yield execute("SELECT 1 FROM groups WHERE name = ? FOR UPDATE", name)
    found = groups_of((yield rows(GROUP_SELECT + " WHERE g.name = ?", name)))
    return found[0] if found else None


def member_group(d: Dialect, name: str, account: Account, *, lock: bool = False) -> Op[Group]:
    """The group named ``name`` if ``account`` is a member.

    Raises:
        GroupNotFound, NotGroupMember: as the names say.
    """
    group = yield from get_group(d, name, lock=lock)
    if group is None:
        raise GroupNotFound(f"The group '#{name}' does not exist.")
    if account.username not in group.members:
        raise NotGroupMember(f"You are not a member of '#{name}'.")
    return group


def list_groups(account: Account) -> Op[list[Group]]:
    """The groups ``account`` belongs to, sorted by name (code point order)."""
    found = yield rows(
        GROUP_SELECT + " WHERE g.id IN (SELECT group_id FROM group_members WHERE user_id = ?)",
        account.id,
    )
    return groups_of(found)


def _announce(
    d: Dialect,
    group: Group,
    actor: Account,
    action: GroupAction,
    members: tuple[str, ...],
    audience: tuple[str, ...],
    at_ms: int,
) -> Op[Appended]:
    """Store a GROUP_UPDATE entry in the inbox of every user in ``audience``."""
    return (
        yield from append(
            d,
            NewEntry(
                actor,
                (yield from accounts_by_name(d, audience)),
                f"~group:{group.id}:{uuid.uuid4().hex}",
                "",
                at_ms,
                kind=EntryKind.GROUP_UPDATE,
                group=group,
                meta={"action": str(action), "members": list(members)},
            ),
        )
    )


def create_group(
    d: Dialect, name: str, creator: Account, members: list[Account], at_ms: int
) -> Op[tuple[Group, Appended]]:
    """Create a group of ``creator`` and ``members`` and announce it to them.

    Raises:
        GroupNameTaken: the name exists.
    """
    group_id = yield value(
        "INSERT INTO groups (name, created_ms, created_by) VALUES (?, ?, ?)"
        " ON CONFLICT (name) DO NOTHING RETURNING id",
        name,
        at_ms,
        creator.id,
    )
    if group_id is None:
        raise GroupNameTaken(f"The group name '#{name}' is already taken.")
    everyone = {a.id: a for a in [creator, *members]}
    yield many(
        "INSERT INTO group_members (group_id, user_id, joined_ms) VALUES (?, ?, ?)",
        [(group_id, uid, at_ms) for uid in everyone],
    )
    group = yield from get_group(d, name)
    assert group is not None
    update = yield from _announce(
        d, group, creator, GroupAction.CREATED, group.members, group.members, at_ms
    )
    return group, update


def add_members(
    d: Dialect, name: str, actor: Account, members: list[Account], at_ms: int
) -> Op[tuple[Group, Appended | None]]:
    """Add ``members`` (``actor`` must be a member) and announce the newcomers."""
    group = yield from member_group(d, name, actor, lock=True)
    new = [a for a in members if a.username not in group.members]
    if not new:
        return group, None
    yield many(
        "INSERT INTO group_members (group_id, user_id, joined_ms) VALUES (?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        [(group.id, a.id, at_ms) for a in {a.id: a for a in new}.values()],
    )
    after = yield from get_group(d, name)
    assert after is not None
    added = tuple(sorted({a.username for a in new}))
    update = yield from _announce(
        d, after, actor, GroupAction.MEMBERS_ADDED, added, after.members, at_ms
    )
    return after, update


def leave_group(d: Dialect, name: str, account: Account, at_ms: int) -> Op[Appended]:
    """Remove ``account`` and announce it to the group and to the leaver."""
    group = yield from member_group(d, name, account, lock=True)
    yield execute(
        "DELETE FROM group_members WHERE group_id = ? AND user_id = ?", group.id, account.id
    )
    return (
        yield from _announce(
            d,
            group,
            account,
            GroupAction.MEMBERS_LEFT,
            (account.username,),
            group.members,
            at_ms,
        )
    )
