"""The store's operations, written once for every SQL backend (see :mod:`.sql`).

Each function returns an operation (a generator of queries, see
:data:`~hubbub.server.sql.Op`) that a backend's driver runs in one transaction
(writes) or on a read connection (reads). Here live the queries, the row
mapping and the inbox rules: gap-free per-recipient sequences, idempotency per
``(sender, client_id)``, who gets a delivery receipt, the server's own
``~receipt:`` and ``~group:`` client ids, group membership and history paging.

Where PostgreSQL runs writers in parallel (``dialect.concurrent_writers``) the
operations lock what they depend on: ``users`` rows in id order (the one order
every transaction uses, so no lock cycles), the group row for membership
changes, and an advisory lock per username skeleton. SQLite's single writer
thread needs none of them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from .errors import GroupNameTaken, GroupNotFound, NotGroupMember, UsernameConfusable, UsernameTaken
from .models import (
    Account,
    Appended,
    EntryKind,
    Group,
    GroupAction,
    InboxCursor,
    SessionInfo,
    StoredMessage,
    from_ms,
)
from .sql import Dialect, Op, execute, many, one, rows, value
from .usernames import skeleton

SKELETON_LOCK = 0x534B454C  # "SKEL": with hashtext(skeleton), serialises look-alike checks

ACCOUNT_COLS = "id, username, display_name, password_hash, bot, created_ms"
_SENDER_COLS = "s.id, s.username, s.display_name, s.password_hash, s.bot, s.created_ms"
_ENTRY_COLS = """m.id, s.username, s.display_name, m.body, m.sent_ms, m.client_id, m.kind,
    g.name, m.ref_message_id, m.meta"""
_MESSAGE_SELECT = f"""
SELECT i.sequence, r.username, {_ENTRY_COLS}
FROM inbox i
JOIN messages m ON m.id = i.message_id
JOIN users s ON s.id = m.sender_id
JOIN users r ON r.id = i.user_id
LEFT JOIN groups g ON g.id = m.group_id
"""
_HISTORY_SELECT = f"""
SELECT 0, coalesce(r.username, ''), {_ENTRY_COLS}
FROM messages m
JOIN users s ON s.id = m.sender_id
LEFT JOIN users r ON r.id = m.recipient_id
LEFT JOIN groups g ON g.id = m.group_id
"""
_GROUP_SELECT = """
SELECT g.id, g.name, g.created_ms, u.username
FROM groups g
LEFT JOIN group_members gm ON gm.group_id = g.id
LEFT JOIN users u ON u.id = gm.user_id
"""


# -- row mapping ----------------------------------------------------------------------


def account_of(row: Sequence[Any]) -> Account:
    """Row of ``ACCOUNT_COLS`` → Account."""
    return Account(
        id=row[0],
        username=row[1],
        display_name=row[2],
        password_hash=row[3],
        bot=bool(row[4]),
        created_at=from_ms(row[5]),
    )


def message_of(row: Sequence[Any]) -> StoredMessage:
    """Row of an inbox or history select → StoredMessage."""
    (seq, recipient, mid, sender, sender_name, body, sent_ms, client_id, kind, group, ref, meta) = (
        row
    )
    info = json.loads(meta) if meta else {}
    entry_kind = EntryKind(kind)
    refs: tuple[int, ...] = ()
    ref_client_ids: tuple[str, ...] = ()
    if entry_kind is EntryKind.RECEIPT:
        client_id = info.get("client_id", "")
        refs, ref_client_ids = _receipt_refs(info, ref or 0, client_id)
    return StoredMessage(
        sequence=seq,
        message_id=mid,
        sender=sender,
        sender_display_name=sender_name,
        recipient=recipient,
        body=body,
        sent_at=from_ms(sent_ms),
        client_id=client_id,
        kind=entry_kind,
        group=group or "",
        ref_message_id=ref or 0,
        action=GroupAction(info["action"]) if "action" in info else None,
        members=tuple(info.get("members", ())),
        ref_message_ids=refs,
        ref_client_ids=ref_client_ids,
    )


# A cumulative receipt lists at most this many messages (bounds one entry to ~130 KB
# with 128-character client ids); a longer acknowledged run gives several receipts.
RECEIPT_MAX_IDS = 1000


def _receipt_meta(covered: Sequence[tuple[int, str]]) -> dict[str, Any]:
    """The ``meta`` of a receipt covering ``covered`` ((message id, client id), oldest
    first): ``client_id`` of the last one, plus both lists when it covers several."""
    meta: dict[str, Any] = {"client_id": covered[-1][1]}
    if len(covered) > 1:
        meta["message_ids"] = [mid for mid, _ in covered]
        meta["client_ids"] = [cid for _, cid in covered]
    return meta


def _receipt_refs(
    info: dict[str, Any], ref: int, client_id: str
) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """The messages a receipt covers, from its ``meta`` (see :func:`_receipt_meta`); a
    receipt without lists (one message, or stored before cumulative receipts) covers
    ``ref`` alone."""
    if "message_ids" in info:
        return tuple(info["message_ids"]), tuple(info["client_ids"])
    return (ref,), (client_id,)


def groups_of(found: Sequence[Sequence[Any]]) -> list[Group]:
    """Rows of ``_GROUP_SELECT`` (one per member) → groups sorted by name, members by
    code point."""
    by_id: dict[int, tuple[Any, str, int, list[str]]] = {}
    for group_id, name, created_ms, member in found:
        entry = by_id.setdefault(group_id, (group_id, name, created_ms, []))
        if member is not None:
            entry[3].append(member)
    return sorted(
        (
            Group(gid, name, tuple(sorted(members)), from_ms(created))
            for gid, name, created, members in by_id.values()
        ),
        key=lambda g: g.name,
    )


def _confusable(username: str) -> UsernameConfusable:
    return UsernameConfusable(
        f"The username '{username}' is too similar to an existing username; choose another."
    )


# -- accounts and sessions ---------------------------------------------------------------


def create_account(
    d: Dialect, username: str, display_name: str, password_hash: str, bot: bool, created_ms: int
) -> Op[Account]:
    """Insert an account and its skeleton; the look-alike check and the insert are atomic
    (one SQLite writer; a PostgreSQL advisory lock per skeleton).

    Raises:
        UsernameTaken, UsernameConfusable: as the names say.
    """
    shape = skeleton(username)
    if d.concurrent_writers:  # writers of one skeleton queue here: the check sees every commit
        yield execute("SELECT pg_advisory_xact_lock(?, hashtext(?))", SKELETON_LOCK, shape)
    alike = yield value("SELECT 1 FROM users WHERE skeleton = ? AND username != ?", shape, username)
    if alike and not (yield value("SELECT 1 FROM users WHERE username = ?", username)):
        raise _confusable(username)
    account_id = yield value(
        "INSERT INTO users (username, display_name, password_hash, bot, created_ms, skeleton)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (username) DO NOTHING RETURNING id",
        username,
        display_name,
        password_hash,
        bot,
        created_ms,
        shape,
    )
    if account_id is None:
        raise UsernameTaken(f"The username '{username}' is already taken.")
    return Account(account_id, username, display_name, password_hash, bot, from_ms(created_ms))


def get_account(username: str) -> Op[Account | None]:
    """The account named ``username``, or None."""
    row = yield one(f"SELECT {ACCOUNT_COLS} FROM users WHERE username = ?", username)
    return account_of(row) if row else None


def list_accounts(d: Dialect, after: str, limit: int) -> Op[list[Account]]:
    """Accounts named after ``after`` in code point order, at most ``limit`` (0: all)."""
    sql = (
        f"SELECT {ACCOUNT_COLS} FROM users WHERE username{d.binary} > ? ORDER BY username{d.binary}"
    )
    found = yield (rows(sql + " LIMIT ?", after, limit) if limit > 0 else rows(sql, after))
    return [account_of(r) for r in found]


def update_account(
    d: Dialect,
    account: Account,
    display_name: str | None,
    password_hash: str | None,
    keep_session: bytes | None,
) -> Op[Account]:
    """Change display name and/or password hash; a new password revokes other sessions."""
    if display_name is not None:
        yield execute("UPDATE users SET display_name = ? WHERE id = ?", display_name, account.id)
    if password_hash is not None:
        yield execute("UPDATE users SET password_hash = ? WHERE id = ?", password_hash, account.id)
        yield execute(
            f"DELETE FROM sessions WHERE user_id = ? AND token_hash {d.is_distinct} ?",
            account.id,
            keep_session,
        )
    row = yield one(f"SELECT {ACCOUNT_COLS} FROM users WHERE id = ?", account.id)
    return account_of(row)


def create_session(token_hash: bytes, account_id: int, now_ms: int, expires_ms: int) -> Op[None]:
    """Store a session keyed by the token's hash (and drop expired ones)."""
    yield execute("DELETE FROM sessions WHERE expires_ms < ?", now_ms)
    yield execute(
        "INSERT INTO sessions (token_hash, user_id, created_ms, expires_ms) VALUES (?, ?, ?, ?)",
        token_hash,
        account_id,
        now_ms,
        expires_ms,
    )


def get_session(token_hash: bytes, now_ms: int) -> Op[SessionInfo | None]:
    """The account and expiry of a session unexpired at ``now_ms``, or None."""
    row = yield one(
        f"SELECT {_SENDER_COLS}, x.expires_ms FROM sessions x"
        " JOIN users s ON s.id = x.user_id WHERE x.token_hash = ? AND x.expires_ms > ?",
        token_hash,
        now_ms,
    )
    return SessionInfo(account_of(tuple(row)[:6]), from_ms(row[6])) if row else None


def delete_session(token_hash: bytes) -> Op[None]:
    """Revoke one session."""
    yield execute("DELETE FROM sessions WHERE token_hash = ?", token_hash)


# -- inbox ------------------------------------------------------------------------------


def _accounts_by_name(d: Dialect, names: Sequence[str]) -> Op[list[Account]]:
    if not names:
        return []
    condition, params = d.in_list("username", names, "text")
    found = yield rows(f"SELECT {ACCOUNT_COLS} FROM users WHERE {condition}", *params)
    return sorted((account_of(r) for r in found), key=lambda a: a.username)


def _lock_users(d: Dialect, ids: Sequence[int]) -> Op[None]:
    """PostgreSQL: lock ``users`` rows in id order (the one order every transaction uses).

    ``FOR NO KEY UPDATE`` is the lock the sequence ``UPDATE`` takes anyway; unlike
    ``FOR UPDATE`` it does not conflict with the ``FOR KEY SHARE`` locks that
    foreign-key checks of concurrent inserts hold on the same rows.
    """
    if d.concurrent_writers and ids:
        condition, params = d.in_list("id", sorted(set(ids)), "bigint")
        yield rows(f"SELECT id FROM users WHERE {condition} ORDER BY id FOR NO KEY UPDATE", *params)


def append(
    d: Dialect,
    *,
    sender: Account,
    targets: list[Account],
    client_id: str,
    body: str,
    sent_ms: int,
    kind: EntryKind = EntryKind.TEXT,
    recipient: Account | None = None,
    group: Group | None = None,
    ref_message_id: int | None = None,
    meta: dict[str, Any] | None = None,
) -> Op[Appended]:
    """Store one message and an inbox entry per target at its next sequence.

    Idempotent per ``(sender, client_id)``: a message stored before (also by a
    concurrent PostgreSQL transaction, which the insert waits for) resolves to
    its stored entries with ``duplicate=True``.
    """
    meta_text = json.dumps(meta) if meta else None
    message_id = yield value(
        "INSERT INTO messages (kind, sender_id, recipient_id, group_id, client_id, body, sent_ms,"
        " ref_message_id, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (sender_id, client_id) DO NOTHING RETURNING id",
        int(kind),
        sender.id,
        recipient.id if recipient else None,
        group.id if group else None,
        client_id,
        body,
        sent_ms,
        ref_message_id,
        meta_text,
    )
    if message_id is None:  # stored before
        row = yield one(
            "SELECT id, sent_ms FROM messages WHERE sender_id = ? AND client_id = ?",
            sender.id,
            client_id,
        )
        found = yield rows(_MESSAGE_SELECT + " WHERE i.message_id = ? ORDER BY i.user_id", row[0])
        return Appended(row[0], from_ms(row[1]), [message_of(r) for r in found], True)
    sequences: dict[int, int] = {}
    if len(targets) == 1:  # a direct message or a receipt: the common case, kept short
        (target,) = targets
        sequences[target.id] = yield value(
            "UPDATE users SET last_sequence = last_sequence + 1 WHERE id = ?"
            " RETURNING last_sequence",
            target.id,
        )
        yield execute(
            "INSERT INTO inbox (user_id, sequence, message_id) VALUES (?, ?, ?)",
            target.id,
            sequences[target.id],
            message_id,
        )
    elif targets:
        ids = [t.id for t in targets]
        yield from _lock_users(d, ids)
        condition, params = d.in_list("id", ids, "bigint")
        for user_id, sequence in (
            yield rows(
                "UPDATE users SET last_sequence = last_sequence + 1"
                f" WHERE {condition} RETURNING id, last_sequence",
                *params,
            )
        ):
            sequences[user_id] = sequence
        yield many(
            "INSERT INTO inbox (user_id, sequence, message_id) VALUES (?, ?, ?)",
            [(i, sequences[i], message_id) for i in ids],
        )
    entries = [
        message_of(
            (
                sequences[target.id],
                target.username,
                message_id,
                sender.username,
                sender.display_name,
                body,
                sent_ms,
                client_id,
                int(kind),
                group.name if group else None,
                ref_message_id,
                meta_text,
            )
        )
        for target in targets
    ]
    return Appended(message_id, from_ms(sent_ms), entries, False)


def store_message(
    d: Dialect, sender: Account, recipient: Account, client_id: str, body: str, sent_ms: int
) -> Op[Appended]:
    """A direct message into ``recipient``'s inbox (see :func:`append`)."""
    return append(
        d,
        sender=sender,
        targets=[recipient],
        client_id=client_id,
        body=body,
        sent_ms=sent_ms,
        recipient=recipient,
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
            sender=sender,
            targets=(yield from _accounts_by_name(d, others)),
            client_id=client_id,
            body=body,
            sent_ms=sent_ms,
            group=found,
        )
    )


def messages_after(account: Account, after_sequence: int, limit: int) -> Op[list[StoredMessage]]:
    """Up to ``limit`` inbox entries after ``after_sequence``, oldest first."""
    found = yield rows(
        _MESSAGE_SELECT + " WHERE i.user_id = ? AND i.sequence > ? ORDER BY i.sequence LIMIT ?",
        account.id,
        after_sequence,
        limit,
    )
    return [message_of(r) for r in found]


def cursor(account: Account) -> Op[InboxCursor]:
    """The account's last stored and last acknowledged sequence."""
    row = yield one("SELECT last_sequence, acked_sequence FROM users WHERE id = ?", account.id)
    return InboxCursor(row[0], row[1]) if row else InboxCursor(0, 0)


def ack(d: Dialect, account: Account, sequence: int, at_ms: int) -> Op[list[StoredMessage]]:
    """Raise the acked cursor (capped at the last stored one, never lowered); store ONE
    cumulative RECEIPT in each sender's inbox listing that sender's newly acknowledged
    direct texts, oldest first (up to :data:`RECEIPT_MAX_IDS` per receipt). Its client id
    is ``~receipt:<last message id>``, unique because an ack never covers a message
    twice."""
    cursor_sql = "SELECT acked_sequence, last_sequence FROM users WHERE id = ?"
    acked, last = yield one(cursor_sql, account.id)
    if min(sequence, last) <= acked:
        return []  # nothing new
    if d.concurrent_writers:  # lock the acker and the senders to receive receipts, re-read
        senders = yield rows(
            "SELECT DISTINCT m.sender_id FROM inbox i JOIN messages m ON m.id = i.message_id"
            " WHERE i.user_id = ? AND i.sequence > ? AND i.sequence <= ?",
            account.id,
            acked,
            min(sequence, last),
        )
        yield from _lock_users(d, [account.id, *(s[0] for s in senders)])
        acked, last = yield one(cursor_sql, account.id)
    new = min(sequence, last)
    if new <= acked:
        return []
    yield execute("UPDATE users SET acked_sequence = ? WHERE id = ?", new, account.id)
    delivered = yield rows(
        f"SELECT m.id, m.client_id, {_SENDER_COLS}"
        " FROM inbox i JOIN messages m ON m.id = i.message_id"
        " JOIN users s ON s.id = m.sender_id"
        " WHERE i.user_id = ? AND i.sequence > ? AND i.sequence <= ?"
        " AND m.kind = 0 AND m.group_id IS NULL AND NOT s.bot AND s.id != ?"
        " ORDER BY i.sequence",
        account.id,
        acked,
        new,
        account.id,
    )
    by_sender: dict[int, tuple[Account, list[tuple[int, str]]]] = {}
    for row in delivered:
        sender = by_sender.get(row[2])
        if sender is None:
            sender = by_sender[row[2]] = (account_of(tuple(row)[2:]), [])
        sender[1].append((row[0], row[1]))
    receipts: list[StoredMessage] = []
    for target, covered in by_sender.values():
        for start in range(0, len(covered), RECEIPT_MAX_IDS):
            chunk = covered[start : start + RECEIPT_MAX_IDS]
            last_id = chunk[-1][0]
            appended = yield from append(
                d,
                sender=account,
                targets=[target],
                client_id=f"~receipt:{last_id}",
                body="",
                sent_ms=at_ms,
                kind=EntryKind.RECEIPT,
                ref_message_id=last_id,
                meta=_receipt_meta(chunk),
            )
            if not appended.duplicate:
                receipts += appended.entries
    return receipts


# -- groups -------------------------------------------------------------------------------


def get_group(d: Dialect, name: str, *, lock: bool = False) -> Op[Group | None]:
    """The group named ``name`` (members sorted), or None; ``lock`` serialises membership
    changes of the group on PostgreSQL."""
    if lock and d.concurrent_writers:
        yield execute("SELECT 1 FROM groups WHERE name = ? FOR UPDATE", name)
    found = groups_of((yield rows(_GROUP_SELECT + " WHERE g.name = ?", name)))
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
        _GROUP_SELECT + " WHERE g.id IN (SELECT group_id FROM group_members WHERE user_id = ?)",
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
            sender=actor,
            targets=(yield from _accounts_by_name(d, audience)),
            client_id=f"~group:{group.id}:{uuid.uuid4().hex}",
            body="",
            sent_ms=at_ms,
            kind=EntryKind.GROUP_UPDATE,
            group=group,
            meta={"action": str(action), "members": list(members)},
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


def history(
    d: Dialect,
    account: Account,
    peer: Account | None,
    group: str | None,
    before_id: int,
    limit: int,
) -> Op[list[StoredMessage]]:
    """Text messages of one conversation with id < ``before_id``, newest first.

    Raises:
        GroupNotFound, NotGroupMember: for ``group``.
    """
    if group is not None:
        found = yield from member_group(d, group, account)
        selected = yield rows(
            _HISTORY_SELECT + " WHERE m.group_id = ? AND m.kind = 0 AND m.id < ?"
            " ORDER BY m.id DESC LIMIT ?",
            found.id,
            before_id,
            limit,
        )
    else:
        assert peer is not None
        selected = yield rows(
            _HISTORY_SELECT + " WHERE m.id IN ("
            " SELECT id FROM messages WHERE sender_id = ? AND recipient_id = ?"
            "  AND group_id IS NULL AND kind = 0 AND id < ?"
            " UNION ALL"
            " SELECT id FROM messages WHERE sender_id = ? AND recipient_id = ?"
            "  AND group_id IS NULL AND kind = 0 AND id < ?)"
            " ORDER BY m.id DESC LIMIT ?",
            account.id,
            peer.id,
            before_id,
            peer.id,
            account.id,
            before_id,
            limit,
        )
    return [message_of(r) for r in selected]
