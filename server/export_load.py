"""Import: write a validated export into a new or empty database (an operation, see
:mod:`.sql`), in the caller's one transaction."""

from __future__ import annotations

from . import usernames
from .backup_errors import BackupError
from .export_dump import count_rows
from .export_format import BUILTIN_USERS, Export
from .schema import set_history_id
from .sql import Dialect, Op, execute, many, value


def require_empty(d: Dialect, what: str) -> Op[None]:
    """Operation: refuse a database holding anything but the built-in users (``echobot``).

    Raises:
        BackupError: there are other users, groups, messages or inbox entries.
    """
    builtin, params = d.in_list("username", sorted(BUILTIN_USERS), "text")
    users = yield value(f"SELECT count(*) FROM users WHERE NOT ({builtin})", *params)
    counts = yield from count_rows(d)
    if users or counts.groups or counts.messages or counts.inbox:
        raise BackupError(
            f"{what} is not empty ({users} users besides echobot, {counts.groups} groups,"
            f" {counts.messages} messages); import only into a new or empty database"
        )


def load(d: Dialect, export: Export, what: str = "the database") -> Op[None]:
    """Operation: write ``export`` into the new or empty current-schema database, in the
    caller's one transaction (so any failure rolls everything back).

    Built-in users that exist already (``echobot``) are updated in place; all
    other rows are inserted, message ids kept. The database gets a new history
    id. On PostgreSQL the tables are locked against concurrent writers and the
    message id sequence is moved past the imported ids.

    Raises:
        BackupError: the database is not empty (:func:`require_empty`).
    """
    if d.concurrent_writers:
        yield execute("LOCK TABLE users, groups, group_members, messages, inbox IN EXCLUSIVE MODE")
    yield from require_empty(d, what)
    ids: dict[str, int] = {}
    for u in export.users:
        values = (u.display_name, u.password_hash, u.bot, u.created_ms, u.last_sequence)
        found = yield value("SELECT id FROM users WHERE username = ?", u.username)
        if found is not None:
            yield execute(
                "UPDATE users SET display_name = ?, password_hash = ?, bot = ?,"
                " created_ms = ?, last_sequence = ?, acked_sequence = ? WHERE id = ?",
                *values,
                u.acked_sequence,
                found,
            )
            ids[u.username] = found
        else:
            ids[u.username] = yield value(
                "INSERT INTO users (display_name, password_hash, bot, created_ms,"
                " last_sequence, acked_sequence, username, skeleton)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                *values,
                u.acked_sequence,
                u.username,
                usernames.skeleton(u.username),
            )
    group_ids: dict[str, int] = {}
    for g in export.groups:
        group_id = yield value(
            "INSERT INTO groups (name, created_ms, created_by) VALUES (?, ?, ?) RETURNING id",
            g.name,
            g.created_ms,
            ids[g.created_by] if g.created_by else None,
        )
        group_ids[g.name] = group_id
        yield many(
            "INSERT INTO group_members (group_id, user_id, joined_ms) VALUES (?, ?, ?)",
            [(group_id, ids[name], joined) for name, joined in g.members],
        )
    yield many(
        "INSERT INTO messages (id, kind, sender_id, recipient_id, group_id, client_id, body,"
        " sent_ms, ref_message_id, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                m.id,
                int(m.kind),
                ids[m.sender],
                ids[m.recipient] if m.recipient else None,
                group_ids[m.group] if m.group else None,
                m.client_id,
                m.body,
                m.sent_ms,
                m.ref,
                m.meta,
            )
            for m in export.messages
        ],
    )
    yield many(
        "INSERT INTO inbox (user_id, sequence, message_id) VALUES (?, ?, ?)",
        [(ids[user], seq, mid) for user, seq, mid in export.inbox],
    )
    if d.concurrent_writers:  # explicit ids do not advance the identity sequence
        yield execute(
            "SELECT setval(pg_get_serial_sequence('messages', 'id'), max(id)) FROM messages"
            " HAVING max(id) IS NOT NULL"
        )
    yield from set_history_id()  # imported inboxes are a new history, whatever was there
