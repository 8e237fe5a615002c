"""The inbox rule: messages stored once per ``(sender, client_id)``, each target's
entries at gap-free sequences (multi-row for a batch), and reading an inbox."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .models import (
    Account,
    Appended,
    EntryKind,
    Group,
    InboxCursor,
    StoredMessage,
    from_ms,
)
from .sql import Dialect, Op, execute, one, rows, value
from .store_ops_mapping import (
    ACCOUNT_COLS,
    MESSAGE_SELECT,
    account_of,
    message_of,
)

# -- inbox ------------------------------------------------------------------------------


def accounts_by_name(d: Dialect, names: Sequence[str]) -> Op[list[Account]]:
    """The accounts named in ``names`` (unknown names skipped), sorted by username."""
    if not names:
        return []
    condition, params = d.in_list("username", names, "text")
    found = yield rows(f"SELECT {ACCOUNT_COLS} FROM users WHERE {condition}", *params)
    return sorted((account_of(r) for r in found), key=lambda a: a.username)


def lock_users(d: Dialect, ids: Sequence[int]) -> Op[None]:
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
            yield from lock_users(d, list(counts))
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
    found = yield rows(MESSAGE_SELECT + " WHERE i.message_id = ? ORDER BY i.user_id", row[0])
    return Appended(row[0], from_ms(row[1]), [message_of(r) for r in found], True)


def direct_message(
    sender: Account, recipient: Account, client_id: str, body: str, sent_ms: int
) -> NewEntry:
    """The entry of a direct message (for :func:`append` / :func:`append_many`)."""
    return NewEntry(sender, (recipient,), client_id, body, sent_ms, recipient=recipient)


def messages_after(account: Account, after_sequence: int, limit: int) -> Op[list[StoredMessage]]:
    """Up to ``limit`` inbox entries after ``after_sequence``, oldest first."""
    found = yield rows(
        MESSAGE_SELECT + " WHERE i.user_id = ? AND i.sequence > ? ORDER BY i.sequence LIMIT ?",
        account.id,
        after_sequence,
        limit,
    )
    return [message_of(r) for r in found]


def cursor(account: Account) -> Op[InboxCursor]:
    """The account's last stored and last acknowledged sequence."""
    row = yield one("SELECT last_sequence, acked_sequence FROM users WHERE id = ?", account.id)
    return InboxCursor(row[0], row[1]) if row else InboxCursor(0, 0)
