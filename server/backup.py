"""Backup, restore, JSON export and import of a Hubbub SQLite database (no gRPC here).

* :func:`backup_database` copies a database, also while a server runs on it, with
  the SQLite Online Backup API (https://www.sqlite.org/backup.html) in one step:
  one read snapshot of the WAL database, so the server's writer is never blocked
  (https://www.sqlite.org/wal.html, "readers do not block writers").
* :func:`restore_database` replaces the database of a *stopped* server with a
  verified backup, atomically (copy next to it, fsync, rename).
* :func:`export_database` / :func:`import_database` write and read the
  documented JSON format (README, "Backup, restore, export, import"), built
  and checked by the pure functions :func:`dump` / :func:`parse_export` /
  :func:`load` over ``sqlite3`` connections.
* :class:`DatabaseLock` is the exclusive advisory lock (``flock(2)`` on
  ``DB.lock``) a server holds for its lifetime, so that restore, import and a
  second server can tell the database is in use.

Backups, exports, the lock file and a restored or imported database are created
0600 and new folders 0700 (they hold every password hash and message).

Every failure is a :class:`BackupError` whose message is one line.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from . import usernames
from .auth import check_display_name
from .config import ServerConfig
from .errors import HubbubError
from .hub import CLIENT_ID_MAX
from .models import EntryKind
from .passwords import UNUSABLE_HASH
from .store_sqlite import (
    PRIVATE_FILE_MODE,
    SCHEMA_VERSION,
    SIDECARS,
    SqliteStore,
    create_private_file,
    make_private_dir,
    set_history_id,
)

if sys.platform != "win32":
    import fcntl

EXPORT_FORMAT = "hubbub-export"
EXPORT_VERSION = 1
BUILTIN_USERS = frozenset({"echobot"})  # created by every server start; allowed in an "empty" DB
BUILTIN_BOTS = frozenset({"echobot"})  # the only accounts that may be bots (hash "!", no login)
DEFAULT_MAX_MESSAGE_BYTES = ServerConfig().max_message_bytes  # the server's default body limit
PASSWORD_HASH_PREFIX = "$argon2"  # what the server stores (PHC string) besides UNUSABLE_HASH
SQLITE_MAGIC = b"SQLite format 3\x00"  # https://www.sqlite.org/fileformat.html#the_database_header

#: Tables every schema version must have (a backup is checked against its own version).
REQUIRED_TABLES: dict[int, frozenset[str]] = {
    1: frozenset({"schema_version", "users", "sessions", "messages", "inbox"}),
    2: frozenset(
        {"schema_version", "users", "sessions", "messages", "inbox", "groups", "group_members"}
    ),
    3: frozenset(
        {
            "schema_version",
            "users",
            "sessions",
            "messages",
            "inbox",
            "groups",
            "group_members",
            "meta",
        }
    ),
}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_KIND_NAMES = {kind: kind.name.lower() for kind in EntryKind}
_KINDS_BY_NAME = {name: kind for kind, name in _KIND_NAMES.items()}


class BackupError(RuntimeError):
    """A backup, restore, export or import was refused or failed; ``str()`` is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class DatabaseInUse(BackupError):
    """The database is locked by a running server (or a restore/import in progress)."""


class ExportFormatError(BackupError):
    """The JSON is not a valid Hubbub export (foreign, malformed or inconsistent)."""


@dataclass(frozen=True, slots=True)
class Counts:
    """How much a database or export holds (rows)."""

    users: int
    groups: int
    messages: int
    inbox: int

    def __str__(self) -> str:
        parts = [
            (self.users, "user"),
            (self.groups, "group"),
            (self.messages, "message"),
            (self.inbox, "inbox entry"),
        ]
        return ", ".join(f"{n} {word if n == 1 else _plural(word)}" for n, word in parts)


def _plural(word: str) -> str:
    return word[:-1] + "ies" if word.endswith("y") else word + "s"


@dataclass(frozen=True, slots=True)
class BackupResult:
    """A written backup: its path, size in bytes, schema version and row counts."""

    path: Path
    size_bytes: int
    schema_version: int
    counts: Counts


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """A restored database: schema version of the backup (older ones migrate on start)."""

    schema_version: int
    counts: Counts


# -- the server's lock -----------------------------------------------------------------


@dataclass(slots=True)
class _Held:
    fd: int
    holders: int
    shared: bool


_HELD: dict[str, _Held] = {}  # lock file path → this process's open lock
_HELD_GUARD = threading.Lock()


def lock_path(database: str | Path) -> Path:
    """The lock file of ``database``: ``DB.lock`` next to the (symlink-resolved) file."""
    resolved = Path(database).resolve()
    return resolved.with_name(resolved.name + ".lock")


class DatabaseLock:
    """An exclusive ``flock(2)`` on ``DB.lock``, held by a server for its lifetime.

    The kernel drops the lock when the holder exits, even on SIGKILL, so a stale
    lock file never blocks anything; the file itself is left in place (it holds
    the pid of the last holder, for error messages). Use :meth:`acquire`.
    """

    def __init__(self, key: str) -> None:
        self._key = key
        self._released = False

    @classmethod
    def acquire(cls, database: str | Path, *, shared_in_process: bool = False) -> DatabaseLock:
        """Take the lock of ``database`` without waiting.

        Args:
            database: the SQLite file (need not exist; its directory is created).
            shared_in_process: servers pass True: several in-process servers on
                one database (tests do this) share the lock, while another
                process, and a restore or import in this process, are refused.

        Raises:
            DatabaseInUse: another process, or a non-shared holder here, has it.
            OSError: the lock file cannot be created.
        """
        path = lock_path(database)
        make_private_dir(path.parent)
        key = str(path)
        with _HELD_GUARD:
            held = _HELD.get(key)
            if held is not None:
                if not (shared_in_process and held.shared):
                    raise _in_use(database, path)
                held.holders += 1
                return cls(key)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE_MODE)
            try:
                os.fchmod(fd, PRIVATE_FILE_MODE)  # a lock file of an older version was 0644
                if sys.platform != "win32":  # no flock on Windows: in-process checks only
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise _in_use(database, path) from None
            except BaseException:
                os.close(fd)
                raise
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            _HELD[key] = _Held(fd, 1, shared_in_process)
            return cls(key)

    def release(self) -> None:
        """Give the lock up (idempotent); the last in-process holder closes the file."""
        with _HELD_GUARD:
            if self._released:
                return
            self._released = True
            held = _HELD[self._key]
            held.holders -= 1
            if held.holders == 0:
                del _HELD[self._key]
                os.close(held.fd)  # closing the only descriptor releases the flock


def _in_use(database: str | Path, path: Path) -> DatabaseInUse:
    pid = ""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        text = path.read_text().strip()
        pid = f" (pid {text})" if text.isdigit() else ""
    return DatabaseInUse(
        f"the database {database} is in use by a running hubbub-server{pid}; stop it first"
    )


def database_in_use(database: str | Path) -> bool:
    """True if a server (or a restore/import) holds the lock of ``database`` now."""
    try:
        DatabaseLock.acquire(database).release()
    except DatabaseInUse:
        return True
    return False


# -- checks ------------------------------------------------------------------------------


def is_sqlite_file(path: Path) -> bool:
    """True if ``path`` starts with the SQLite 3 header string (16 bytes)."""
    try:
        with path.open("rb") as f:
            return f.read(16) == SQLITE_MAGIC
    except OSError:
        return False


def check_database(conn: sqlite3.Connection, what: str) -> int:
    """Check that ``conn`` holds an intact Hubbub database; return its schema version.

    Runs ``PRAGMA integrity_check`` and ``PRAGMA foreign_key_check``
    (https://www.sqlite.org/pragma.html) and looks for the tables of the
    database's own schema version. ``what`` names the file in messages.

    Raises:
        BackupError: not SQLite, damaged, foreign (no ``schema_version``), of no
            or a newer schema version than :data:`SCHEMA_VERSION`, or missing tables.
    """
    try:
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check(3)")]
        if problems != ["ok"]:
            first = " ".join(problems[0].split())
            detail = first if len(first) <= 120 else first[:119] + "…"
            raise BackupError(f"{what} is damaged (integrity check: {detail})")
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        version = schema_version(conn, what, tables)
        missing = REQUIRED_TABLES.get(version, REQUIRED_TABLES[max(REQUIRED_TABLES)]) - tables
        if missing:
            raise BackupError(
                f"{what} is not a Hubbub database (schema v{version} without table(s)"
                f" {', '.join(sorted(missing))})"
            )
        broken = conn.execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise BackupError(f"{what} is damaged ({len(broken)} broken references)")
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{what} is not a usable SQLite database ({exc})") from None
    return version


def schema_version(conn: sqlite3.Connection, what: str, tables: set[str] | None = None) -> int:
    """The Hubbub schema version of ``conn`` (max of ``schema_version``).

    Raises:
        BackupError: no ``schema_version`` table or row, or a version newer than
            this server's :data:`SCHEMA_VERSION`.
        sqlite3.DatabaseError: the file is not a database.
    """
    if tables is None:
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
    if "schema_version" not in tables:
        raise BackupError(f"{what} is not a Hubbub database (no schema_version table)")
    (version,) = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    if not isinstance(version, int) or version < 1:
        raise BackupError(f"{what} is not a Hubbub database (no schema version recorded)")
    if version > SCHEMA_VERSION:
        raise BackupError(
            f"{what} has schema version {version}, newer than this hubbub-server supports"
            f" ({SCHEMA_VERSION}); upgrade hubbub-server"
        )
    return version


def count_rows(conn: sqlite3.Connection) -> Counts:
    """Rows of users, groups, messages and inbox (tables a schema lacks count 0)."""
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    def n(table: str) -> int:
        if table not in tables:
            return 0
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    return Counts(n("users"), n("groups"), n("messages"), n("inbox"))


# -- files -------------------------------------------------------------------------------


def _connect(path: Path) -> sqlite3.Connection:
    """Autocommit connection to an existing file (``mode=rw``: a missing file is an error)."""
    uri = f"{path.absolute().as_uri()}?mode=rw"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30)
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _same_file(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sidecars(path: Path) -> list[Path]:
    return [path.with_name(path.name + suffix) for suffix in SIDECARS]


def _remove(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _require_database_file(path: Path) -> None:
    if not path.is_file():
        raise BackupError(f"no database at {path}")
    if not is_sqlite_file(path):
        raise BackupError(f"{path} is not an SQLite database")


def _install(tmp: Path, target: Path) -> None:
    """fsync ``tmp``, rename it over ``target`` and fsync the directory (atomic replace)."""
    _fsync_file(tmp)
    os.replace(tmp, target)
    _fsync_dir(target.parent)


# -- backup and restore ----------------------------------------------------------------------


def backup_database(database: str | Path, target: str | Path) -> BackupResult:
    """Write a consistent copy of ``database`` to ``target``; safe while a server runs.

    The copy is made from a separate connection with the Online Backup API in
    one step (``Connection.backup`` with ``pages=-1``): one WAL read snapshot,
    so every write committed before the call is in it and the server's writes
    go on meanwhile. It is written to ``TARGET.tmp``, switched to rollback
    journal mode (a self-contained single file), checked with
    :func:`check_database`, fsynced and renamed over ``target``.

    Raises:
        BackupError: no or no Hubbub database, the target is the database, or
            SQLite failed; ``TARGET.tmp`` is removed and ``target`` untouched.
        OSError: the target directory is not writable.
    """
    db, out = Path(database), Path(target)
    _require_database_file(db)
    if _same_file(db, out):
        raise BackupError(f"the backup file {out} would overwrite the database itself")
    make_private_dir(out.parent)
    tmp = out.with_name(out.name + ".tmp")
    _remove(tmp, *_sidecars(tmp))
    try:
        try:
            src = _connect(db)
            try:
                create_private_file(tmp)  # 0600 from the start: it holds every password hash
                dst = sqlite3.connect(tmp, isolation_level=None)
                try:
                    src.backup(dst)  # pages=-1: the whole database from one snapshot
                    dst.execute("PRAGMA journal_mode=DELETE")
                    version = check_database(dst, f"the backup of {db}")
                    counts = count_rows(dst)
                finally:
                    dst.close()
            finally:
                src.close()
        except sqlite3.Error as exc:
            raise BackupError(f"backup of {db} failed: {exc}") from None
        _install(tmp, out)
    except BaseException:
        _remove(tmp, *_sidecars(tmp))
        raise
    return BackupResult(out, out.stat().st_size, version, counts)


def _retire(db: Path) -> None:
    """Fold the old database's WAL into it and drop its ``-wal``/``-shm`` before replacement.

    Checkpointing first (``wal_checkpoint(TRUNCATE)`` then ``journal_mode=DELETE``)
    leaves a self-contained old file, so a crash before the rename loses
    nothing and no old WAL can ever be replayed onto the new file.
    """
    if db.exists():
        try:
            conn = _connect(db)
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                conn.execute("PRAGMA journal_mode=DELETE")
            finally:
                conn.close()
        except sqlite3.Error:
            pass  # the old file is unusable anyway; its journals go below
    _remove(*_sidecars(db))


def restore_database(backup: str | Path, database: str | Path) -> RestoreResult:
    """Replace ``database`` (its server stopped) with the verified backup file ``backup``.

    Holds the database lock throughout, so no server can start meanwhile. The
    backup is copied to ``DB.restore.tmp`` next to the database and checked
    there (:func:`check_database`); only then is the old database retired
    (:func:`_retire`) and the copy fsynced and renamed over it. An older schema
    version is migrated by the next server start.

    Raises:
        DatabaseInUse: a server runs on ``database``.
        BackupError: the backup is missing, not SQLite, damaged, not Hubbub's,
            of a newer schema, or has an un-checkpointed ``-wal`` beside it.
            In every refusal the database is untouched.
        OSError: files cannot be written.
    """
    src, db = Path(backup), Path(database)
    if not src.is_file():
        raise BackupError(f"no backup file at {src}")
    if _same_file(src, db):
        raise BackupError(f"{src} is the database itself")
    if not is_sqlite_file(src):
        raise BackupError(f"{src} is not an SQLite database")
    wal = src.with_name(src.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise BackupError(
            f"{src} has a write-ahead log beside it ({wal.name}); restore a file written by"
            " 'hubbub-server backup'"
        )
    make_private_dir(db.parent)
    lock = DatabaseLock.acquire(db)
    try:
        tmp = db.with_name(db.name + ".restore.tmp")
        _remove(tmp, *_sidecars(tmp))
        try:
            create_private_file(tmp)  # copyfile keeps the mode of an existing target: 0600
            shutil.copyfile(src, tmp)
            try:
                conn = sqlite3.connect(tmp, isolation_level=None)
                try:
                    conn.execute("PRAGMA journal_mode=DELETE")
                    version = check_database(conn, str(src))
                    counts = count_rows(conn)
                    if version >= 3:  # older schemas get a new history id when migrated
                        set_history_id(conn)  # the backup's history diverged from the live one
                finally:
                    conn.close()
            except sqlite3.DatabaseError as exc:
                raise BackupError(f"{src} is not a usable SQLite database ({exc})") from None
            _remove(*_sidecars(tmp))
            _retire(db)
            _install(tmp, db)
        except BaseException:
            _remove(tmp, *_sidecars(tmp))
            raise
    finally:
        lock.release()
    return RestoreResult(version, counts)


# -- JSON export ------------------------------------------------------------------------------


def _iso(ms: int) -> str:
    """Milliseconds since the epoch → ISO 8601 UTC with milliseconds, e.g. ``…T12:00:00.123Z``."""
    return (_EPOCH + ms * _MS).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dump(conn: sqlite3.Connection, now: datetime | None = None) -> dict[str, Any]:
    """The export document (format version 1) of a current-schema database.

    Run it inside one read transaction for a consistent snapshot. Sessions are
    not exported. Message ids are kept; users and groups are named.

    Raises:
        BackupError: not a Hubbub database of schema :data:`SCHEMA_VERSION`.
    """
    version = schema_version(conn, "the database")
    if version != SCHEMA_VERSION:
        raise BackupError(
            f"the database has schema version {version}; start hubbub-server on it once to"
            f" migrate it to {SCHEMA_VERSION}, then export"
        )
    users = [
        {
            "username": name,
            "display_name": shown,
            "password_hash": hashed,
            "bot": bool(bot),
            "created_at": _iso(created),
            "last_sequence": last,
            "acked_sequence": acked,
        }
        for name, shown, hashed, bot, created, last, acked in conn.execute(
            "SELECT username, display_name, password_hash, bot, created_ms, last_sequence,"
            " acked_sequence FROM users ORDER BY id"
        )
    ]
    members: dict[int, list[dict[str, Any]]] = {}
    for group_id, name, joined in conn.execute(
        "SELECT gm.group_id, u.username, gm.joined_ms FROM group_members gm"
        " JOIN users u ON u.id = gm.user_id ORDER BY gm.group_id, u.username"
    ):
        members.setdefault(group_id, []).append({"username": name, "joined_at": _iso(joined)})
    groups = [
        {
            "name": name,
            "created_at": _iso(created),
            "created_by": creator,
            "members": members.get(group_id, []),
        }
        for group_id, name, created, creator in conn.execute(
            "SELECT g.id, g.name, g.created_ms, u.username FROM groups g"
            " LEFT JOIN users u ON u.id = g.created_by ORDER BY g.id"
        )
    ]
    messages = [
        {
            "id": mid,
            "kind": _KIND_NAMES[EntryKind(kind)],
            "sender": sender,
            "recipient": recipient,
            "group": group,
            "client_id": client_id,
            "body": body,
            "sent_at": _iso(sent),
            "ref": ref,
            "meta": json.loads(meta) if meta else None,
        }
        for mid, kind, sender, recipient, group, client_id, body, sent, ref, meta in conn.execute(
            "SELECT m.id, m.kind, s.username, r.username, g.name, m.client_id, m.body,"
            " m.sent_ms, m.ref_message_id, m.meta FROM messages m"
            " JOIN users s ON s.id = m.sender_id LEFT JOIN users r ON r.id = m.recipient_id"
            " LEFT JOIN groups g ON g.id = m.group_id ORDER BY m.id"
        )
    ]
    inbox = [
        {"user": name, "sequence": seq, "message": mid}
        for name, seq, mid in conn.execute(
            "SELECT u.username, i.sequence, i.message_id FROM inbox i"
            " JOIN users u ON u.id = i.user_id ORDER BY u.id, i.sequence"
        )
    ]
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "schema_version": version,
        "exported_at": _iso(((now or datetime.now(UTC)) - _EPOCH) // _MS),
        "users": users,
        "groups": groups,
        "messages": messages,
        "inbox": inbox,
    }


def export_database(database: str | Path, target: str | Path) -> Counts:
    """Write the JSON export of ``database`` to ``target`` (``TARGET.tmp``, fsync, rename).

    Reads one snapshot, so it may run while a server runs.

    Raises:
        BackupError: no Hubbub database of the current schema, or SQLite failed.
        OSError: the target cannot be written.
    """
    db, out = Path(database), Path(target)
    _require_database_file(db)
    if _same_file(db, out):
        raise BackupError(f"the export file {out} would overwrite the database itself")
    try:
        conn = _connect(db)
        try:
            conn.execute("BEGIN")  # one read snapshot for every SELECT below
            document = dump(conn)
            conn.execute("COMMIT")
        finally:
            conn.close()
    except (sqlite3.Error, ValueError) as exc:  # ValueError: a stored kind or meta is invalid
        raise BackupError(f"export of {db} failed: {exc}") from None
    make_private_dir(out.parent)
    tmp = out.with_name(out.name + ".tmp")
    try:
        create_private_file(tmp)  # 0600: the export holds every password hash and message
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(document, f, ensure_ascii=False, indent=1)
            f.write("\n")
        _install(tmp, out)
    except BaseException:
        _remove(tmp)
        raise
    return _document_counts(document)


def _document_counts(document: dict[str, Any]) -> Counts:
    return Counts(
        len(document["users"]),
        len(document["groups"]),
        len(document["messages"]),
        len(document["inbox"]),
    )


# -- JSON import ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _User:
    username: str
    display_name: str
    password_hash: str
    bot: bool
    created_ms: int
    last_sequence: int
    acked_sequence: int


@dataclass(frozen=True, slots=True)
class _Group:
    name: str
    created_ms: int
    created_by: str | None
    members: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class _Message:
    id: int
    kind: EntryKind
    sender: str
    recipient: str | None
    group: str | None
    client_id: str
    body: str
    sent_ms: int
    ref: int | None
    meta: str | None


@dataclass(frozen=True, slots=True)
class Export:
    """A validated export, ready for :func:`load` (times in ms since the epoch)."""

    users: tuple[_User, ...]
    groups: tuple[_Group, ...]
    messages: tuple[_Message, ...]
    inbox: tuple[tuple[str, int, int], ...]  # (username, sequence, message id)

    @property
    def counts(self) -> Counts:
        """Row counts of the export."""
        return Counts(len(self.users), len(self.groups), len(self.messages), len(self.inbox))


def _bad(where: str, problem: str) -> ExportFormatError:
    return ExportFormatError(f"not a valid Hubbub export: {where}: {problem}")


def _get(record: Any, key: str, where: str) -> Any:
    if not isinstance(record, dict):
        raise _bad(where, "must be an object")
    if key not in record:
        raise _bad(where, f"missing key '{key}'")
    return record[key]


def _str(record: Any, key: str, where: str, *, nullable: bool = False, empty: bool = True) -> Any:
    value = _get(record, key, where)
    if value is None and nullable:
        return None
    if not isinstance(value, str) or (not empty and not value):
        raise _bad(f"{where}.{key}", "must be a " + ("string" if empty else "non-empty string"))
    return value


def _int(record: Any, key: str, where: str, *, low: int = 0, nullable: bool = False) -> Any:
    value = _get(record, key, where)
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _bad(f"{where}.{key}", f"must be an integer >= {low}")
    return value


def _time(record: Any, key: str, where: str) -> int:
    value = _get(record, key, where)
    try:
        when = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise _bad(f"{where}.{key}", "must be an ISO 8601 time with a UTC offset")
    return (when - _EPOCH) // _MS


def _list(document: dict[str, Any], key: str) -> list[Any]:
    value = _get(document, key, "document")
    if not isinstance(value, list):
        raise _bad(key, "must be a list")
    return value


def _name(record: Any, key: str, where: str) -> str:
    value: str = _str(record, key, where, empty=False)
    try:
        canonical = usernames.canonical(value)
    except HubbubError:
        canonical = ""
    if canonical != value:
        raise _bad(f"{where}.{key}", f"{value!r} is not a canonical name")
    return value


def _known(names: set[str] | dict[str, Any], name: str | None, where: str, what: str) -> None:
    if name is not None and name not in names:
        raise _bad(where, f"unknown {what} {name!r}")


def _user_rules(raw: Any, user: _User, who: str) -> None:
    """The live API's account rules for one imported user (``who`` names the record).

    Names are valid and canonical (RFC 8265, checked by the caller); reserved
    names and their look-alikes only for the built-in bots, which must be bots
    with the unusable password hash (no one can log in as echobot); no other
    account is a bot; display names pass :func:`auth.check_display_name` (at
    most 64 characters, no control or format characters); password hashes are
    argon2 PHC strings or the unusable hash. Values are never echoed (a display
    name may hold terminal escape codes).
    """
    if user.username in BUILTIN_BOTS:
        if not user.bot or user.password_hash != UNUSABLE_HASH:
            raise _bad(who, "the built-in bot must have bot true and the password hash '!'")
    elif usernames.is_reserved(user.username):
        raise _bad(who, "the name is reserved for the server or looks like a reserved name")
    elif user.bot:
        raise _bad(who, "bot: only the built-in bots (echobot) may be bots")
    try:
        shown = check_display_name(user.display_name)
    except HubbubError as exc:
        raise _bad(who, exc.message) from None
    if shown != user.display_name or not shown:
        raise _bad(who, "display_name: must be non-empty, trimmed and NFC-normalised")
    if user.password_hash != UNUSABLE_HASH and not user.password_hash.startswith(
        PASSWORD_HASH_PREFIX
    ):
        raise _bad(who, "password_hash: must be an argon2 hash or '!'")


def _message_rules(message: _Message, who: str, max_message_bytes: int) -> None:
    """The live API's send rules for one imported message (``who`` names the record):
    a text has a client id of 1-128 characters not starting with '~' (the server's own
    ids), a body of 1 to ``max_message_bytes`` UTF-8 bytes and exactly one of recipient
    and group; receipts and group updates have server ids ('~…') and no body."""
    if message.kind is EntryKind.TEXT:
        if not 1 <= len(message.client_id) <= CLIENT_ID_MAX or message.client_id[0] == "~":
            raise _bad(who, f"client_id: must be 1 to {CLIENT_ID_MAX} characters, not '~…'")
        size = len(message.body.encode())
        if not 1 <= size <= max_message_bytes:
            raise _bad(who, f"body: {size} bytes; must be 1 to {max_message_bytes}")
        if (message.recipient is None) == (message.group is None):
            raise _bad(who, "must have exactly one of recipient and group")
    elif message.body or not message.client_id.startswith("~"):
        raise _bad(who, f"a {_KIND_NAMES[message.kind]} has no body and a server id ('~…')")


def parse_export(document: Any, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Export:
    """Validate an export document (format version 1) completely, writing nothing.

    Checks the format tag and version, every field's type, names (canonical),
    uniqueness (usernames, group names, message ids, ``(sender, client_id)``,
    ``(user, sequence)``) and every reference (members, senders, recipients,
    groups, inbox users and messages, sequences within ``last_sequence``); and
    the live API's rules, so an import cannot create what Register and send
    would refuse: account rules (:func:`_user_rules`), no two usernames with the
    same UTS #39 skeleton, send rules (:func:`_message_rules`, bodies up to
    ``max_message_bytes``), each inbox holding exactly sequences 1 to
    ``last_sequence`` (a gap would stall delivery). Unknown extra keys are ignored.

    Raises:
        ExportFormatError: the first problem found, with its JSON location
            (e.g. ``users[3] (username "x")``), in one line.
    """
    if not isinstance(document, dict):
        raise _bad("document", "must be a JSON object")
    tag = document.get("format")
    if tag != EXPORT_FORMAT:
        raise _bad("format", f"expected {EXPORT_FORMAT!r}, got {tag!r}")
    version = _int(document, "version", "document", low=1)
    if version > EXPORT_VERSION:
        raise _bad("version", f"{version} is newer than this server reads ({EXPORT_VERSION})")
    _time(document, "exported_at", "document")

    users: dict[str, _User] = {}
    user_records: dict[str, str] = {}  # username → 'users[i] (username "…")'
    skeletons: dict[str, str] = {}  # UTS #39 skeleton → the record that has it
    for i, raw in enumerate(_list(document, "users")):
        where = f"users[{i}]"
        name = _name(raw, "username", where)
        if name in users:
            raise _bad(f"{where}.username", f"duplicate user {name!r}")
        bot = _get(raw, "bot", where)
        if not isinstance(bot, bool):
            raise _bad(f"{where}.bot", "must be true or false")
        last = _int(raw, "last_sequence", where)
        acked = _int(raw, "acked_sequence", where)
        if acked > last:
            raise _bad(f"{where}.acked_sequence", "must not exceed last_sequence")
        users[name] = _User(
            name,
            _str(raw, "display_name", where),
            _str(raw, "password_hash", where, empty=False),
            bot,
            _time(raw, "created_at", where),
            last,
            acked,
        )
        who = user_records[name] = f'{where} (username "{name}")'
        _user_rules(raw, users[name], who)
        shape = usernames.skeleton(name)
        if shape in skeletons:
            raise _bad(who, f"looks like {skeletons[shape]} (same UTS #39 skeleton)")
        skeletons[shape] = who

    groups: dict[str, _Group] = {}
    for i, raw in enumerate(_list(document, "groups")):
        where = f"groups[{i}]"
        name = _name(raw, "name", where)
        if name in groups:
            raise _bad(f"{where}.name", f"duplicate group {name!r}")
        creator = _str(raw, "created_by", where, nullable=True)
        _known(users, creator, f"{where}.created_by", "user")
        raw_members = _get(raw, "members", where)
        if not isinstance(raw_members, list):
            raise _bad(f"{where}.members", "must be a list")
        members: dict[str, int] = {}
        for j, member in enumerate(raw_members):
            mwhere = f"{where}.members[{j}]"
            username = _str(member, "username", mwhere, empty=False)
            _known(users, username, f"{mwhere}.username", "user")
            if username in members:
                raise _bad(f"{mwhere}.username", f"duplicate member {username!r}")
            members[username] = _time(member, "joined_at", mwhere)
        groups[name] = _Group(
            name, _time(raw, "created_at", where), creator, tuple(members.items())
        )

    messages: dict[int, _Message] = {}
    client_ids: set[tuple[str, str]] = set()
    for i, raw in enumerate(_list(document, "messages")):
        where = f"messages[{i}]"
        mid = _int(raw, "id", where, low=1)
        if mid in messages:
            raise _bad(f"{where}.id", f"duplicate message id {mid}")
        kind_name = _get(raw, "kind", where)
        if kind_name not in _KINDS_BY_NAME:
            raise _bad(f"{where}.kind", f"must be one of {', '.join(sorted(_KINDS_BY_NAME))}")
        sender = _str(raw, "sender", where, empty=False)
        _known(users, sender, f"{where}.sender", "user")
        recipient = _str(raw, "recipient", where, nullable=True)
        _known(users, recipient, f"{where}.recipient", "user")
        group = _str(raw, "group", where, nullable=True)
        _known(groups, group, f"{where}.group", "group")
        client_id = _str(raw, "client_id", where, empty=False)
        if (sender, client_id) in client_ids:
            raise _bad(f"{where}.client_id", f"duplicate client id {client_id!r} of {sender!r}")
        client_ids.add((sender, client_id))
        meta = _get(raw, "meta", where)
        if meta is not None and not isinstance(meta, dict):
            raise _bad(f"{where}.meta", "must be an object or null")
        messages[mid] = _Message(
            mid,
            _KINDS_BY_NAME[kind_name],
            sender,
            recipient,
            group,
            client_id,
            _str(raw, "body", where),
            _time(raw, "sent_at", where),
            _int(raw, "ref", where, low=1, nullable=True),
            json.dumps(meta) if meta else None,
        )
        _message_rules(messages[mid], f"{where} (id {mid})", max_message_bytes)

    inbox: dict[tuple[str, int], int] = {}
    for i, raw in enumerate(_list(document, "inbox")):
        where = f"inbox[{i}]"
        user = _str(raw, "user", where, empty=False)
        _known(users, user, f"{where}.user", "user")
        sequence = _int(raw, "sequence", where, low=1)
        if sequence > users[user].last_sequence:
            raise _bad(f"{where}.sequence", f"beyond last_sequence of {user!r}")
        if (user, sequence) in inbox:
            raise _bad(f"{where}.sequence", f"duplicate sequence {sequence} of {user!r}")
        mid = _int(raw, "message", where, low=1)
        if mid not in messages:
            raise _bad(f"{where}.message", f"unknown message id {mid}")
        inbox[(user, sequence)] = mid

    held: dict[str, int] = {}
    for user, _ in inbox:
        held[user] = held.get(user, 0) + 1
    for name, u in users.items():  # unique sequences <= last: all there iff as many as last
        if held.get(name, 0) != u.last_sequence:
            present = {seq for who, seq in inbox if who == name}
            missing = min(set(range(1, u.last_sequence + 1)) - present)
            raise _bad(
                user_records[name],
                f"inbox: sequence {missing} of 1 to last_sequence {u.last_sequence} is missing"
                " (an inbox has no gaps)",
            )

    return Export(
        tuple(users.values()),
        tuple(groups.values()),
        tuple(messages.values()),
        tuple((user, seq, mid) for (user, seq), mid in inbox.items()),
    )


def _has_tables(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'").fetchone() is not None


def require_empty(conn: sqlite3.Connection, what: str) -> None:
    """Refuse a database holding anything but the built-in users (``echobot``).

    Raises:
        BackupError: there are other users, groups, messages or inbox entries.
    """
    marks = ",".join("?" * len(BUILTIN_USERS))
    (users,) = conn.execute(
        f"SELECT count(*) FROM users WHERE username NOT IN ({marks})", tuple(BUILTIN_USERS)
    ).fetchone()
    counts = count_rows(conn)
    if users or counts.groups or counts.messages or counts.inbox:
        raise BackupError(
            f"{what} is not empty ({users} users besides echobot, {counts.groups} groups,"
            f" {counts.messages} messages); import only into a new or empty database"
        )


def load(conn: sqlite3.Connection, export: Export, what: str = "the database") -> None:
    """Write ``export`` into the current-schema database ``conn`` in one transaction.

    Built-in users that exist already (``echobot``) are updated in place; all
    other rows are inserted, message ids kept. Any failure rolls everything back.

    Raises:
        BackupError: the database is not empty (:func:`require_empty`) or
            breaks a constraint.
        sqlite3.Error: SQLite failed (nothing was written).
    """
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("BEGIN IMMEDIATE")
    try:
        require_empty(conn, what)
        ids: dict[str, int] = {}
        for u in export.users:
            values = (
                u.display_name,
                u.password_hash,
                int(u.bot),
                u.created_ms,
                u.last_sequence,
                u.acked_sequence,
            )
            row = conn.execute("SELECT id FROM users WHERE username = ?", (u.username,)).fetchone()
            if row is not None:
                conn.execute(
                    "UPDATE users SET display_name = ?, password_hash = ?, bot = ?,"
                    " created_ms = ?, last_sequence = ?, acked_sequence = ? WHERE id = ?",
                    (*values, row[0]),
                )
                ids[u.username] = row[0]
            else:
                cur = conn.execute(
                    "INSERT INTO users (display_name, password_hash, bot, created_ms,"
                    " last_sequence, acked_sequence, username, skeleton)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (*values, u.username, usernames.skeleton(u.username)),
                )
                assert cur.lastrowid is not None
                ids[u.username] = cur.lastrowid
        group_ids: dict[str, int] = {}
        for g in export.groups:
            cur = conn.execute(
                "INSERT INTO groups (name, created_ms, created_by) VALUES (?, ?, ?)",
                (g.name, g.created_ms, ids[g.created_by] if g.created_by else None),
            )
            assert cur.lastrowid is not None
            group_ids[g.name] = cur.lastrowid
            conn.executemany(
                "INSERT INTO group_members (group_id, user_id, joined_ms) VALUES (?, ?, ?)",
                [(cur.lastrowid, ids[name], joined) for name, joined in g.members],
            )
        conn.executemany(
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
        conn.executemany(
            "INSERT INTO inbox (user_id, sequence, message_id) VALUES (?, ?, ?)",
            [(ids[user], seq, mid) for user, seq, mid in export.inbox],
        )
        set_history_id(conn)  # imported inboxes are a new history, whatever was there
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def read_export(
    source: str | Path, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> Export:
    """Read and validate an export file (UTF-8 JSON) with :func:`parse_export`.

    Raises:
        BackupError: unreadable, not JSON or not a valid export (message names the file).
    """
    src = Path(source)
    try:
        text = src.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BackupError(f"cannot read {src}: {exc}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExportFormatError(f"{src} is not valid JSON ({exc})") from None
    try:
        return parse_export(document, max_message_bytes=max_message_bytes)
    except ExportFormatError as exc:
        raise ExportFormatError(f"{src}: {exc}") from None


def import_database(
    source: str | Path,
    database: str | Path,
    *,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> Counts:
    """Import the export file ``source`` into a new or empty ``database`` (server stopped).

    The file must follow the live API's rules (:func:`parse_export`); bodies
    may be up to ``max_message_bytes`` (the server's ``--max-message-bytes``).

    The whole file is validated first; then, holding the database lock, an
    existing database is checked to be empty (read only), the schema is
    created or migrated, and :func:`load` writes everything in one transaction.
    A database this call created is removed again if the import fails.

    Raises:
        DatabaseInUse: a server runs on ``database``.
        BackupError: the file is not a valid export, or the database is not
            empty, not Hubbub's or of a newer schema (left untouched).
        OSError: files cannot be written.
    """
    export = read_export(source, max_message_bytes=max_message_bytes)
    db = Path(database)
    make_private_dir(db.parent)
    lock = DatabaseLock.acquire(db)
    try:
        created = not db.exists()
        if not created:
            if db.stat().st_size and not is_sqlite_file(db):
                raise BackupError(f"{db} is not an SQLite database")
            try:
                conn = _connect(db)
                try:
                    if _has_tables(conn):  # else an empty SQLite file: like a new one
                        schema_version(conn, str(db))
                        require_empty(conn, str(db))
                finally:
                    conn.close()
            except sqlite3.Error as exc:
                raise BackupError(f"{db} is not a usable SQLite database ({exc})") from None
        try:
            SqliteStore(db)._migrate()  # the server's own schema creation and migrations
            conn = _connect(db)
            try:
                load(conn, export, str(db))
            finally:
                conn.close()
        except BaseException:
            if created:
                _remove(db, *_sidecars(db))
            raise
    except sqlite3.Error as exc:
        raise BackupError(f"import into {db} failed: {exc}") from None
    finally:
        lock.release()
    return export.counts
