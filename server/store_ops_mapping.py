"""Row mapping and the shared SELECTs of the store's operations (accounts, inbox
entries, history, groups)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .models import (
    Account,
    EntryKind,
    Group,
    GroupAction,
    StoredMessage,
    from_ms,
)

ACCOUNT_COLS = "id, username, display_name, password_hash, bot, created_ms"
SENDER_COLS = "s.id, s.username, s.display_name, s.password_hash, s.bot, s.created_ms"
ENTRY_COLS = """m.id, s.username, s.display_name, m.body, m.sent_ms, m.client_id, m.kind,
    g.name, m.ref_message_id, m.meta"""
MESSAGE_SELECT = f"""
SELECT i.sequence, r.username, {ENTRY_COLS}
FROM inbox i
JOIN messages m ON m.id = i.message_id
JOIN users s ON s.id = m.sender_id
JOIN users r ON r.id = i.user_id
LEFT JOIN groups g ON g.id = m.group_id
"""
HISTORY_SELECT = f"""
SELECT 0, coalesce(r.username, ''), {ENTRY_COLS}
FROM messages m
JOIN users s ON s.id = m.sender_id
LEFT JOIN users r ON r.id = m.recipient_id
LEFT JOIN groups g ON g.id = m.group_id
"""
GROUP_SELECT = """
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
        refs, ref_client_ids = receipt_refs(info, ref or 0, client_id)
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


#: A cumulative receipt lists at most this many messages (bounds one entry to ~130 KB
#: with 128-character client ids); a longer acknowledged run gives several receipts.
RECEIPT_MAX_IDS = 1000


def receipt_meta(covered: Sequence[tuple[int, str]]) -> dict[str, Any]:
    """The ``meta`` of a receipt covering ``covered`` ((message id, client id), oldest
    first): ``client_id`` of the last one, plus both lists when it covers several."""
    meta: dict[str, Any] = {"client_id": covered[-1][1]}
    if len(covered) > 1:
        meta["message_ids"] = [mid for mid, _ in covered]
        meta["client_ids"] = [cid for _, cid in covered]
    return meta


def receipt_refs(
    info: dict[str, Any], ref: int, client_id: str
) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """The messages a receipt covers, from its ``meta`` (see :func:`receipt_meta`); a
    receipt without lists (one message, or stored before cumulative receipts) covers
    ``ref`` alone."""
    if "message_ids" in info:
        return tuple(info["message_ids"]), tuple(info["client_ids"])
    return (ref,), (client_id,)


def groups_of(found: Sequence[Sequence[Any]]) -> list[Group]:
    """Rows of ``GROUP_SELECT`` (one per member) → groups sorted by name, members by
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
