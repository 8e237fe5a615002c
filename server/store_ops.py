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
from dataclasses import dataclass
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
    return StoredMessage(
        sequence=seq,
        message_id=mid,
        sender=sender,
        sender_display_name=sender_name,
        recipient=recipient,
        body=body,
        sent_at=from_ms(sent_ms),
        client_id=info.get("client_id", "") if entry_kind is EntryKind.RECEIPT else client_id,
        kind=entry_kind,
        group=group or "",
        ref_message_id=ref or 0,
        action=GroupAction(info["action"]) if "action" in info else None,
        members=tuple(info.get("members", ())),
    )


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


@dataclass(frozen=True, slots=True)
class NewEntry:
    """One message to store and the inboxes it goes to (an item of :func:`append_many`).

    Attributes:
        sender: who sends it; ``(sender.id, client_id)`` is its idempotency key.
        targets: the accounts that get an inbox entry, in this order.
        client_id: the sender's id of the message (or a server-made ``~receipt:``/``~group:``).
        body: the text ("" for receipts and group updates).
        sent_ms: when it was sent, ms since the Unix epoch (UTC).
        kind: TEXT, RECEIPT or GROUP_UPDATE.
        recipient: the peer of a direct message (None for group entries and receipts).
        group: the group of a group message or update.
        ref_message_id: the message a receipt is about.
        meta: extra fields stored as JSON (a receipt's client id, a group update's action).
    """

    sender: Account
    targets: Sequence[Account]
    client_id: str
    body: str
    sent_ms: int
    kind: EntryKind = EntryKind.TEXT
    recipient: Account | None = None
    group: Group | None = None
    ref_message_id: int | None = None
    meta: dict[str, Any] | None = None


_INSERT_MESSAGE = (
    "INSERT INTO messages (kind, sender_id, recipient_id, group_id, client_id, body, sent_ms,"
    " ref_message_id, meta)"
)
_MESSAGE_COLUMNS = (
    ("kind", "smallint"),
    ("sender_id", "bigint"),
    ("recipient_id", "bigint"),
    ("group_id", "bigint"),
    ("client_id", "text"),
    ("body", "text"),
    ("sent_ms", "bigint"),
    ("ref_message_id", "bigint"),
    ("meta", "text"),
)


def append(d: Dialect, entry: NewEntry) -> Op[Appended]:
    """Store one message and an inbox entry per target (:func:`append_many` of one)."""
    (appended,) = yield from append_many(d, [entry])
    return appended


def append_many(d: Dialect, entries: Sequence[NewEntry]) -> Op[list[Appended]]:
    """Store messages and their inbox entries, each target's at its next sequences.

    The inbox rule, written once for every write: for each user, the entries of
    this call get the next gap-free sequences in ``entries`` order (and target
    order within an entry), so a sender's messages keep their order. A few
    statements whatever the number of entries (multi-row :meth:`Dialect.table`
    statements): the group commit of the PostgreSQL store passes every queued
    message of a batch here at once.

    Idempotent per ``(sender, client_id)``: a message stored before (also by a
    concurrent PostgreSQL transaction, which the insert waits for) or earlier in
    ``entries`` resolves to its stored entries with ``duplicate=True``.

    Returns:
        One :class:`Appended` per entry, in ``entries`` order.
    """
    if not entries:
        return []
    first: dict[tuple[int, str], int] = {}  # idempotency key → index of its first entry
    for i, entry in enumerate(entries):
        first.setdefault((entry.sender.id, entry.client_id), i)
    fresh = sorted(first.values())
    metas = [json.dumps(e.meta) if e.meta else None for e in entries]
    inserted: dict[int, int] = {}  # entry index → new message id
    if len(fresh) == 1:  # one message (SQLite's every write): the plain insert
        (i,) = fresh
        e = entries[i]
        message_id = yield value(
            _INSERT_MESSAGE + " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (sender_id, client_id) DO NOTHING RETURNING id",
            *_message_row(e, metas[i]),
        )
        if message_id is not None:
            inserted[i] = message_id
    else:
        table, params = d.table(
            "n", _MESSAGE_COLUMNS, [_message_row(entries[i], metas[i]) for i in fresh]
        )
        names = ", ".join(name for name, _ in _MESSAGE_COLUMNS)
        for message_id, sender_id, client_id in (
            yield rows(
                f"{_INSERT_MESSAGE} SELECT {names} FROM {table} WHERE true ORDER BY ord"
                " ON CONFLICT (sender_id, client_id) DO NOTHING"
                " RETURNING id, sender_id, client_id",
                *params,
            )
        ):
            inserted[first[(sender_id, client_id)]] = message_id
    counts: dict[int, int] = {}  # user id → inbox entries to make
    for i in inserted:
        for target in entries[i].targets:
            counts[target.id] = counts.get(target.id, 0) + 1
    last: dict[int, int] = {}  # user id → its last sequence after this call
    if len(counts) == 1 and sum(counts.values()) == 1:  # one entry: the common case, kept short
        ((user_id, _),) = counts.items()
        last[user_id] = yield value(
            "UPDATE users SET last_sequence = last_sequence + 1 WHERE id = ?"
            " RETURNING last_sequence",
            user_id,
        )
    elif counts:
        if len(counts) > 1:  # several rows: lock them in id order first
            yield from _lock_users(d, list(counts))
        table, params = d.table("c", (("uid", "bigint"), ("n", "bigint")), list(counts.items()))
        for user_id, sequence in (
            yield rows(
                f"UPDATE users SET last_sequence = last_sequence + c.n FROM {table}"
                " WHERE users.id = c.uid RETURNING id, last_sequence",
                *params,
            )
        ):
            last[user_id] = sequence
    following = {uid: last[uid] - n for uid, n in counts.items()}  # user → sequence before
    results: list[Appended | None] = [None] * len(entries)
    inbox: list[tuple[int, int, int]] = []  # (user id, sequence, message id)
    for i in sorted(inserted):
        e, message_id = entries[i], inserted[i]
        made = []
        for target in e.targets:
            following[target.id] += 1
            inbox.append((target.id, following[target.id], message_id))
            made.append(_entry_of(e, target, following[target.id], message_id, metas[i]))
        results[i] = Appended(message_id, from_ms(e.sent_ms), made, False)
    if len(inbox) == 1:
        yield execute(
            "INSERT INTO inbox (user_id, sequence, message_id) VALUES (?, ?, ?)", *inbox[0]
        )
    elif inbox:
        table, params = d.table(
            "b", (("uid", "bigint"), ("seq", "bigint"), ("mid", "bigint")), inbox
        )
        yield execute(
            f"INSERT INTO inbox (user_id, sequence, message_id) SELECT uid, seq, mid FROM {table}",
            *params,
        )
    for i, entry in enumerate(entries):  # stored before, or earlier in this call
        if results[i] is None:
            results[i] = yield from _stored(entry)
    return [r for r in results if r is not None]


def _message_row(e: NewEntry, meta: str | None) -> tuple[Any, ...]:
    return (
        int(e.kind),
        e.sender.id,
        e.recipient.id if e.recipient else None,
        e.group.id if e.group else None,
        e.client_id,
        e.body,
        e.sent_ms,
        e.ref_message_id,
        meta,
    )


def _entry_of(
    e: NewEntry, target: Account, sequence: int, message_id: int, meta: str | None
) -> StoredMessage:
    return message_of(
        (
            sequence,
            target.username,
            message_id,
            e.sender.username,
            e.sender.display_name,
            e.body,
            e.sent_ms,
            e.client_id,
            int(e.kind),
            e.group.name if e.group else None,
            e.ref_message_id,
            meta,
        )
    )


def _stored(entry: NewEntry) -> Op[Appended]:
    """The message stored before under ``entry``'s idempotency key, as a duplicate."""
    row = yield one(
        "SELECT id, sent_ms FROM messages WHERE sender_id = ? AND client_id = ?",
        entry.sender.id,
        entry.client_id,
    )
    found = yield rows(_MESSAGE_SELECT + " WHERE i.message_id = ? ORDER BY i.user_id", row[0])
    return Appended(row[0], from_ms(row[1]), [message_of(r) for r in found], True)


def direct_message(
    sender: Account, recipient: Account, client_id: str, body: str, sent_ms: int
) -> NewEntry:
    """The entry of a direct message (for :func:`append` / :func:`append_many`)."""
    return NewEntry(sender, (recipient,), client_id, body, sent_ms, recipient=recipient)


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
                (yield from _accounts_by_name(d, others)),
                client_id,
                body,
                sent_ms,
                group=found,
            ),
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
    """Raise the acked cursor (capped at the last stored one, never lowered); store one
    RECEIPT in each sender's inbox per newly acknowledged direct text from a user."""
    cursor_sql = "SELECT acked_sequence, last_sequence FROM users WHERE id = ?"
    acked, last = yield one(cursor_sql, account.id)
    new = min(sequence, last)
    if new <= acked:
        return []  # nothing new
    # The acknowledged entries are read before any lock: inbox rows never change once
    # written, and the row locks below are then held for fewer statements. Which of
    # them get a receipt is decided here, not in SQL: a filter on messages columns lets
    # PostgreSQL's planner scan a messages index per inbox row instead of fetching each
    # message by its primary key (seen on young tables, before ANALYZE).
    acknowledged = yield rows(
        f"SELECT i.sequence, m.id, m.client_id, m.kind, m.group_id, {_SENDER_COLS}"
        " FROM inbox i JOIN messages m ON m.id = i.message_id"
        " JOIN users s ON s.id = m.sender_id"
        " WHERE i.user_id = ? AND i.sequence > ? AND i.sequence <= ?"
        " ORDER BY i.sequence",
        account.id,
        acked,
        new,
    )
    if d.concurrent_writers:  # lock the acker and the senders to receive receipts, re-read
        yield from _lock_users(d, [account.id, *(row[5] for row in acknowledged)])
        acked, last = yield one(cursor_sql, account.id)  # a concurrent ack may have raised it
        new = min(new, last)  # entries stored since were not read (nor their senders locked)
        if new <= acked:
            return []
    yield execute("UPDATE users SET acked_sequence = ? WHERE id = ?", new, account.id)
    delivered = [
        (row[1], row[2], account_of(tuple(row)[5:]))
        for row in acknowledged
        if acked < row[0] <= new
        and row[3] == EntryKind.TEXT
        and row[4] is None
        and not row[9]
        and row[5] != account.id
    ]
    made = yield from append_many(
        d,
        [
            NewEntry(
                account,
                (sender,),
                f"~receipt:{message_id}",
                "",
                at_ms,
                kind=EntryKind.RECEIPT,
                ref_message_id=message_id,
                meta={"client_id": client_id},
            )
            for message_id, client_id, sender in delivered
        ],
    )
    return [entry for appended in made if not appended.duplicate for entry in appended.entries]


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
            NewEntry(
                actor,
                (yield from _accounts_by_name(d, audience)),
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
