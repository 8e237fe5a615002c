"""The database schema and its migrations, stated once for SQLite and PostgreSQL.

Versions (recorded in the ``schema_version`` table, one row per applied step):

1. accounts, sessions, direct messages and inboxes;
2. groups, inbox entry kinds (receipts, group updates) and history indexes;
   ``messages.recipient_id`` becomes nullable (group messages): SQLite rebuilds
   the table (https://www.sqlite.org/lang_altertable.html#otheralter),
   PostgreSQL alters the column;
3. the history id (``meta``) and the UTS #39 skeleton of every username
   (filled for existing rows by :func:`fill_v3`); PostgreSQL also gets a
   code point order index for account paging.

DDL is written with ``{ID}``, ``{BIGINT}``, … placeholders that each
:class:`~hubbub.server.sql.Dialect` names in its own types. :func:`migrate`
is one operation run by each backend inside one transaction.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .errors import SchemaTooNew
from .sql import POSTGRES, SQLITE, Dialect, Op, execute, many, rows, value
from .usernames import skeleton

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3
MIGRATION_LOCK = 0x48554242  # "HUBB": PostgreSQL pg_advisory_xact_lock key for schema changes
# PostgreSQL support began at v2: a new PostgreSQL database records its versions from
# there on (v1's DDL still runs first), as it always has.
_FIRST_RECORDED = {"sqlite": 1, "postgres": 2}

_V1 = """
CREATE TABLE users (
    id {ID},
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    bot {BOOL} NOT NULL DEFAULT {FALSE},
    created_ms {BIGINT} NOT NULL,
    last_sequence {BIGINT} NOT NULL DEFAULT 0,
    acked_sequence {BIGINT} NOT NULL DEFAULT 0
);
CREATE TABLE sessions (
    token_hash {BYTES} PRIMARY KEY,
    user_id {BIGINT} NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_ms {BIGINT} NOT NULL,
    expires_ms {BIGINT} NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);
CREATE TABLE messages (
    id {ID},
    sender_id {BIGINT} NOT NULL REFERENCES users(id),
    recipient_id {BIGINT} NOT NULL REFERENCES users(id),
    client_id TEXT NOT NULL,
    body TEXT NOT NULL,
    sent_ms {BIGINT} NOT NULL,
    UNIQUE (sender_id, client_id)
);
CREATE TABLE inbox (
    user_id {BIGINT} NOT NULL REFERENCES users(id),
    sequence {BIGINT} NOT NULL,
    message_id {BIGINT} NOT NULL REFERENCES messages(id),
    PRIMARY KEY (user_id, sequence)
){WITHOUT_ROWID};
CREATE INDEX inbox_message ON inbox(message_id)
"""

_V2_GROUPS = """
CREATE TABLE groups (
    id {ID},
    name TEXT NOT NULL UNIQUE,
    created_ms {BIGINT} NOT NULL,
    created_by {BIGINT} REFERENCES users(id)
);
CREATE TABLE group_members (
    group_id {BIGINT} NOT NULL REFERENCES groups(id),
    user_id {BIGINT} NOT NULL REFERENCES users(id),
    joined_ms {BIGINT} NOT NULL,
    PRIMARY KEY (group_id, user_id)
){WITHOUT_ROWID};
CREATE INDEX group_members_user ON group_members(user_id)
"""

_V2_MESSAGES_REBUILD = """
CREATE TABLE messages_v2 (
    id {ID},
    kind {SMALLINT} NOT NULL DEFAULT 0,
    sender_id {BIGINT} NOT NULL REFERENCES users(id),
    recipient_id {BIGINT} REFERENCES users(id),
    group_id {BIGINT} REFERENCES groups(id),
    client_id TEXT NOT NULL,
    body TEXT NOT NULL,
    sent_ms {BIGINT} NOT NULL,
    ref_message_id {BIGINT},
    meta TEXT,
    UNIQUE (sender_id, client_id)
);
INSERT INTO messages_v2 (id, kind, sender_id, recipient_id, client_id, body, sent_ms)
    SELECT id, 0, sender_id, recipient_id, client_id, body, sent_ms FROM messages;
DROP TABLE messages;
ALTER TABLE messages_v2 RENAME TO messages
"""

_V2_MESSAGES_ALTER = """
ALTER TABLE messages ALTER COLUMN recipient_id DROP NOT NULL;
ALTER TABLE messages ADD COLUMN kind {SMALLINT} NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN group_id {BIGINT} REFERENCES groups(id);
ALTER TABLE messages ADD COLUMN ref_message_id {BIGINT};
ALTER TABLE messages ADD COLUMN meta TEXT;
CREATE INDEX sessions_expiry ON sessions(expires_ms)
"""

_V2_INDEXES = """
CREATE INDEX messages_direct ON messages(sender_id, recipient_id, id)
    WHERE group_id IS NULL AND kind = 0;
CREATE INDEX messages_group ON messages(group_id, id) WHERE group_id IS NOT NULL AND kind = 0
"""

_V3 = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
ALTER TABLE users ADD COLUMN skeleton TEXT NOT NULL DEFAULT '';
CREATE INDEX users_skeleton ON users(skeleton)
"""


def new_history_id() -> str:
    """A fresh random history id: 16 random bytes as 32 hex digits."""
    return secrets.token_hex(16)


def set_history_id(history_id: str | None = None) -> Op[str]:
    """Operation: give the (schema v3+) database a new history id; returns it.

    Used when the schema is created and by restore and import, whose result is
    a different history than the database the data came from.
    """
    new = history_id or new_history_id()
    yield execute(
        "INSERT INTO meta (key, value) VALUES ('history_id', ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        new,
    )
    return new


def get_history_id() -> Op[str | None]:
    """Operation: the database's history id, or None if it has none."""
    found = yield value("SELECT value FROM meta WHERE key = 'history_id'")
    return None if found is None else str(found)


def fill_v3(_: Dialect) -> Op[None]:
    """Migration v2 → v3, data part: a history id and every username's skeleton."""
    yield from set_history_id()
    users = yield rows("SELECT id, username FROM users")
    if users:
        yield many(
            "UPDATE users SET skeleton = ? WHERE id = ?", [(skeleton(n), i) for i, n in users]
        )


Step = str | Mapping[str, str]  # DDL for both dialects, or by dialect name


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema version: DDL steps (shared or per dialect) and an optional data fill."""

    version: int
    steps: tuple[Step, ...]
    fill: Callable[[Dialect], Op[None]] | None = None

    def statements(self, dialect: Dialect) -> list[str]:
        """The DDL statements of this version in ``dialect``, in order."""
        out: list[str] = []
        for step in self.steps:
            text = step if isinstance(step, str) else step.get(dialect.name, "")
            for statement in text.format(**dialect.types).split(";"):
                if statement.strip():
                    out.append(statement.strip())
        return out


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, (_V1,)),
    Migration(
        2,
        (
            _V2_GROUPS,
            {SQLITE.name: _V2_MESSAGES_REBUILD, POSTGRES.name: _V2_MESSAGES_ALTER},
            _V2_INDEXES,
        ),
    ),
    Migration(
        3,
        (_V3, {POSTGRES.name: 'CREATE INDEX users_username_c ON users(username COLLATE "C")'}),
        fill_v3,
    ),
)
assert [m.version for m in MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))


def script(version: int, dialect: Dialect) -> str:
    """The DDL of one version as one script (``;``-separated), e.g. to build old databases."""
    return ";\n".join(MIGRATIONS[version - 1].statements(dialect)) + ";\n"


def current_version() -> Op[int]:
    """Operation: the highest recorded schema version (0: none yet); creates the table."""
    yield execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    return int((yield value("SELECT max(version) FROM schema_version")) or 0)


def migrate(dialect: Dialect) -> Op[list[int]]:
    """Operation: create or migrate the schema to :data:`SCHEMA_VERSION`; returns the
    versions applied. Run it in one transaction; on PostgreSQL nodes starting together
    wait for each other on a transaction-scoped advisory lock.

    Raises:
        SchemaTooNew: the database has a newer schema than this server.
    """
    if dialect.concurrent_writers:
        yield execute("SELECT pg_advisory_xact_lock(?)", MIGRATION_LOCK)
    current = yield from current_version()
    if current > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"database schema version {current} is newer than this server "
            f"({SCHEMA_VERSION}); upgrade hubbub-server"
        )
    applied: list[int] = []
    for migration in MIGRATIONS[current:]:
        for statement in migration.statements(dialect):
            yield execute(statement)
        if migration.fill is not None:
            yield from migration.fill(dialect)
        if current or migration.version >= _FIRST_RECORDED[dialect.name]:
            yield execute("INSERT INTO schema_version (version) VALUES (?)", migration.version)
        log.info("database migrated to schema version %d", migration.version)
        applied.append(migration.version)
    return applied


def table_names(dialect: Dialect) -> Op[set[str]]:
    """Operation: the names of the tables in the database (PostgreSQL: current schema)."""
    if dialect is POSTGRES:
        found = yield rows(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        )
    else:
        found = yield rows("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {str(r[0]) for r in found}
