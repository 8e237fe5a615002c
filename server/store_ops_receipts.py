"""Delivery receipts: acknowledging an inbox range stores one cumulative receipt per sender."""

from __future__ import annotations

from .models import (
    Account,
    EntryKind,
    StoredMessage,
)
from .sql import Dialect, Op, execute, one, rows
from .store_ops_inbox import NewEntry, append_many, lock_users
from .store_ops_mapping import (
    RECEIPT_MAX_IDS,
    SENDER_COLS,
    account_of,
    receipt_meta,
)


def ack(d: Dialect, account: Account, sequence: int, at_ms: int) -> Op[list[StoredMessage]]:
    """Raise the acked cursor (capped at the last stored one, never lowered); store ONE
    cumulative RECEIPT in each sender's inbox listing that sender's newly acknowledged
    direct texts, oldest first (up to :data:`RECEIPT_MAX_IDS` per receipt). Its client id
    is ``~receipt:<last message id>``, unique because an ack never covers a message
    twice."""
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
        f"SELECT i.sequence, m.id, m.client_id, m.kind, m.group_id, {SENDER_COLS}"
        " FROM inbox i JOIN messages m ON m.id = i.message_id"
        " JOIN users s ON s.id = m.sender_id"
        " WHERE i.user_id = ? AND i.sequence > ? AND i.sequence <= ?"
        " ORDER BY i.sequence",
        account.id,
        acked,
        new,
    )
    if d.concurrent_writers:  # lock the acker and the senders to receive receipts, re-read
        yield from lock_users(d, [account.id, *(row[5] for row in acknowledged)])
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
    by_sender: dict[int, tuple[Account, list[tuple[int, str]]]] = {}
    for message_id, client_id, sender in delivered:
        covered = by_sender.setdefault(sender.id, (sender, []))[1]
        covered.append((message_id, client_id))
    entries: list[NewEntry] = []
    for sender, covered in by_sender.values():
        for start in range(0, len(covered), RECEIPT_MAX_IDS):
            chunk = covered[start : start + RECEIPT_MAX_IDS]
            last_id = chunk[-1][0]
            entries.append(
                NewEntry(
                    account,
                    (sender,),
                    f"~receipt:{last_id}",
                    "",
                    at_ms,
                    kind=EntryKind.RECEIPT,
                    ref_message_id=last_id,
                    meta=receipt_meta(chunk),
                )
            )
    made = yield from append_many(d, entries)
    return [entry for appended in made if not appended.duplicate for entry in appended.entries]
