"""Export: read a database into the export document (an operation, see :mod:`.sql`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from .backup_errors import BackupError
from .export_format import EPOCH, EXPORT_FORMAT, EXPORT_VERSION, KIND_NAMES, MS, Counts, iso_time
from .models import EntryKind
from .schema import SCHEMA_VERSION, table_names
from .sql import Dialect, Op, rows, value


def count_rows(d: Dialect) -> Op[Counts]:
    """Operation: rows of users, groups, messages and inbox (tables a schema lacks count 0)."""
    tables = yield from table_names(d)
    counted = []
    for table in ("users", "groups", "messages", "inbox"):
        counted.append(
            int((yield value(f"SELECT count(*) FROM {table}"))) if table in tables else 0
        )
    return Counts(*counted)


def recorded_version(d: Dialect, what: str) -> Op[int]:
    """Operation: the Hubbub schema version of the database (max of ``schema_version``).

    Raises:
        BackupError: no ``schema_version`` table or row, or a version newer than
            this server's :data:`SCHEMA_VERSION`.
    """
    if "schema_version" not in (yield from table_names(d)):
        raise BackupError(f"{what} is not a Hubbub database (no schema_version table)")
    version = yield value("SELECT max(version) FROM schema_version")
    if not isinstance(version, int) or version < 1:
        raise BackupError(f"{what} is not a Hubbub database (no schema version recorded)")
    if version > SCHEMA_VERSION:
        raise BackupError(
            f"{what} has schema version {version}, newer than this hubbub-server supports"
            f" ({SCHEMA_VERSION}); upgrade hubbub-server"
        )
    return version


def dump(d: Dialect, now: datetime | None = None, what: str = "the database") -> Op[dict[str, Any]]:
    """Operation: the export document (format version 1) of a current-schema database.

    Run it inside one read transaction for a consistent snapshot. Sessions are
    not exported. Message ids are kept; users and groups are named; lists are
    in id order (members and inboxes by name and sequence), so the same data
    gives the same document on every backend.

    Raises:
        BackupError: not a Hubbub database of schema :data:`SCHEMA_VERSION`.
        ValueError: a stored kind or meta is invalid.
    """
    version = yield from recorded_version(d, what)
    if version != SCHEMA_VERSION:
        raise BackupError(
            f"{what} has schema version {version}; start hubbub-server on it once to"
            f" migrate it to {SCHEMA_VERSION}, then export"
        )
    users = [
        {
            "username": name,
            "display_name": shown,
            "password_hash": hashed,
            "bot": bool(bot),
            "created_at": iso_time(created),
            "last_sequence": last,
            "acked_sequence": acked,
        }
        for name, shown, hashed, bot, created, last, acked in (
            yield rows(
                "SELECT username, display_name, password_hash, bot, created_ms, last_sequence,"
                " acked_sequence FROM users ORDER BY id"
            )
        )
    ]
    members: dict[int, list[dict[str, Any]]] = {}
    for group_id, name, joined in (
        yield rows(
            "SELECT gm.group_id, u.username, gm.joined_ms FROM group_members gm"
            f" JOIN users u ON u.id = gm.user_id ORDER BY gm.group_id, u.username{d.binary}"
        )
    ):
        members.setdefault(group_id, []).append({"username": name, "joined_at": iso_time(joined)})
    groups = [
        {
            "name": name,
            "created_at": iso_time(created),
            "created_by": creator,
            "members": members.get(group_id, []),
        }
        for group_id, name, created, creator in (
            yield rows(
                "SELECT g.id, g.name, g.created_ms, u.username FROM groups g"
                " LEFT JOIN users u ON u.id = g.created_by ORDER BY g.id"
            )
        )
    ]
    messages = [
        {
            "id": mid,
            "kind": KIND_NAMES[EntryKind(kind)],
            "sender": sender,
            "recipient": recipient,
            "group": group,
            "client_id": client_id,
            "body": body,
            "sent_at": iso_time(sent),
            "ref": ref,
            "meta": json.loads(meta) if meta else None,
        }
        for mid, kind, sender, recipient, group, client_id, body, sent, ref, meta in (
            yield rows(
                "SELECT m.id, m.kind, s.username, r.username, g.name, m.client_id, m.body,"
                " m.sent_ms, m.ref_message_id, m.meta FROM messages m"
                " JOIN users s ON s.id = m.sender_id LEFT JOIN users r ON r.id = m.recipient_id"
                " LEFT JOIN groups g ON g.id = m.group_id ORDER BY m.id"
            )
        )
    ]
    inbox = [
        {"user": name, "sequence": seq, "message": mid}
        for name, seq, mid in (
            yield rows(
                "SELECT u.username, i.sequence, i.message_id FROM inbox i"
                " JOIN users u ON u.id = i.user_id ORDER BY u.id, i.sequence"
            )
        )
    ]
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "schema_version": version,
        "exported_at": iso_time(((now or datetime.now(UTC)) - EPOCH) // MS),
        "users": users,
        "groups": groups,
        "messages": messages,
        "inbox": inbox,
    }
