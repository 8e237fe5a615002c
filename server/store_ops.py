"""The store's operations, written once for every SQL backend (see :mod:`.sql`).

Each function returns an operation (a generator of queries, see
:data:`~hubbub.server.sql.Op`) that a backend's driver runs in one transaction
(writes) or on a read connection (reads). Here live the queries, the row
mapping and the inbox rules: gap-free per-recipient sequences, idempotency per
``(sender, client_id)``, who gets a delivery receipt, the server's own
``~receipt:`` and ``~group:`` client ids, group membership and history paging.
One module per concept, re-exported here: :mod:`.store_ops_mapping` (rows →
objects, shared SELECTs), :mod:`.store_ops_accounts` (accounts and sessions),
:mod:`.store_ops_inbox` (the append rule and inbox reads),
:mod:`.store_ops_receipts` (acks), :mod:`.store_ops_groups` (membership,
announcements, group messages) and :mod:`.store_ops_history`.

Where PostgreSQL runs writers in parallel (``dialect.concurrent_writers``) the
operations lock what they depend on: ``users`` rows in id order (the one order
every transaction uses, so no lock cycles), the group row for membership
changes, and an advisory lock per username skeleton. SQLite's single writer
thread needs none of them.
"""

from .store_ops_accounts import (
    SKELETON_LOCK,
    create_account,
    create_session,
    delete_session,
    get_account,
    get_session,
    list_accounts,
    update_account,
)
from .store_ops_groups import (
    add_members,
    create_group,
    get_group,
    leave_group,
    list_groups,
    member_group,
    store_group_message,
)
from .store_ops_history import history
from .store_ops_inbox import NewEntry, append, append_many, cursor, direct_message, messages_after
from .store_ops_mapping import ACCOUNT_COLS, account_of, groups_of, message_of
from .store_ops_receipts import ack

__all__ = [
    "ACCOUNT_COLS",
    "SKELETON_LOCK",
    "NewEntry",
    "account_of",
    "ack",
    "add_members",
    "append",
    "append_many",
    "create_account",
    "create_group",
    "create_session",
    "cursor",
    "delete_session",
    "direct_message",
    "get_account",
    "get_group",
    "get_session",
    "groups_of",
    "history",
    "leave_group",
    "list_accounts",
    "list_groups",
    "member_group",
    "message_of",
    "messages_after",
    "store_group_message",
    "update_account",
]
