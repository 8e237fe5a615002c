"""History: one conversation's text messages, newest first, paged by message id."""

from __future__ import annotations

from .models import (
    Account,
    StoredMessage,
)
from .sql import Dialect, Op, rows
from .store_ops_groups import member_group
from .store_ops_mapping import (
    HISTORY_SELECT,
    message_of,
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
            HISTORY_SELECT + " WHERE m.group_id = ? AND m.kind = 0 AND m.id < ?"
            " ORDER BY m.id DESC LIMIT ?",
            found.id,
            before_id,
            limit,
        )
    else:
        assert peer is not None
        selected = yield rows(
            HISTORY_SELECT + " WHERE m.id IN ("
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
