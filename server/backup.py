"""Backup, restore, JSON export and import of a Hubbub database (no gRPC here).

* :func:`backup_database` copies an SQLite database, also while a server runs
  on it, with the SQLite Online Backup API (https://www.sqlite.org/backup.html)
  in one step: one read snapshot of the WAL database, so the server's writer is
  never blocked (https://www.sqlite.org/wal.html, "readers do not block writers").
  PostgreSQL is backed up with its own tools (``pg_dump``).
* :func:`restore_database` replaces the SQLite database of a *stopped* server
  with a verified backup, atomically (copy next to it, fsync, rename).
* :func:`export_database` / :func:`import_database` (SQLite file) and
  :func:`export_postgres` / :func:`import_postgres` (PostgreSQL URL) write and
  read the same documented JSON format (``hubbub-export`` version 1, see
  :mod:`.export_format`) through the same operations:
  :func:`~.export_dump.dump` reads a database into the document in one read
  snapshot, :func:`~.export_validation.parse_export` validates a document
  completely against the format and the live API's rules, writing nothing, and
  :func:`~.export_load.load` writes it into a new or empty database in one
  transaction; only the connection and transaction differ.
* The database lock is :class:`~.dblock.DatabaseLock`; the errors are those of
  :mod:`.backup_errors`.

Backups, exports, the lock file and a restored or imported database are created
0600 and new folders 0700 (they hold every password hash and message).

Every failure is a :class:`BackupError` whose message is one line.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from . import schema
from .backup_errors import BackupError, DatabaseInUse, ExportFormatError
from .config import redact_url
from .dblock import DatabaseLock, database_in_use, lock_path
from .export_dump import count_rows as count_rows_op
from .export_dump import dump, recorded_version
from .export_format import (
    DEFAULT_MAX_MESSAGE_BYTES,
    Counts,
    Export,
    document_counts,
    write_document,
)
from .export_load import load, require_empty
from .export_validation import parse_export, read_export
from .schema import set_history_id
from .sql import POSTGRES, SQLITE
from .store_postgres import run_op as run_pg
from .store_sqlite import (
    SIDECARS,
    SqliteStore,
    create_private_file,
    make_private_dir,
    run_op,
    transaction,
)

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "REQUIRED_TABLES",
    "BackupError",
    "BackupResult",
    "Counts",
    "DatabaseInUse",
    "DatabaseLock",
    "Export",
    "ExportFormatError",
    "RestoreResult",
    "backup_database",
    "check_database",
    "database_in_use",
    "export_database",
    "export_postgres",
    "import_database",
    "import_postgres",
    "lock_path",
    "parse_export",
    "read_export",
    "restore_database",
]

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
            or a newer schema version than :data:`.schema.SCHEMA_VERSION`, or missing tables.
    """
    try:
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check(3)")]
        if problems != ["ok"]:
            first = " ".join(problems[0].split())
            detail = first if len(first) <= 120 else first[:119] + "…"
            raise BackupError(f"{what} is damaged (integrity check: {detail})")
        tables = run_op(conn, schema.table_names(SQLITE))
        version = schema_version(conn, what)
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


def schema_version(conn: sqlite3.Connection, what: str) -> int:
    """The Hubbub schema version of the SQLite database ``conn``
    (:func:`.export_dump.recorded_version`).

    Raises:
        BackupError: no ``schema_version`` table or row, or a newer version.
        sqlite3.DatabaseError: the file is not a database.
    """
    return run_op(conn, recorded_version(SQLITE, what))


def count_rows(conn: sqlite3.Connection) -> Counts:
    """Rows of users, groups, messages and inbox of the SQLite database ``conn``."""
    return run_op(conn, count_rows_op(SQLITE))


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
                        run_op(
                            conn, set_history_id()
                        )  # the backup's history diverged from the live one
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


# -- JSON export and import --------------------------------------------------------------------


def export_database(database: str | Path, target: str | Path) -> Counts:
    """Write the JSON export of the SQLite ``database`` to ``target`` (0600, atomic).

    Reads one snapshot (one read transaction), so it may run while a server runs.

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
            with transaction(conn, "BEGIN"):  # one read snapshot for every SELECT of dump()
                document = run_op(conn, dump(SQLITE, what=str(db)))
        finally:
            conn.close()
    except (sqlite3.Error, ValueError) as exc:  # ValueError: a stored kind or meta is invalid
        raise BackupError(f"export of {db} failed: {exc}") from None
    write_document(document, out)
    return document_counts(document)


def import_database(
    source: str | Path,
    database: str | Path,
    *,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> Counts:
    """Import the export file ``source`` into a new or empty SQLite ``database`` (server
    stopped).

    The file must follow the live API's rules (:func:`.export_validation.parse_export`);
    bodies may be up to ``max_message_bytes`` (the server's ``--max-message-bytes``).

    The whole file is validated first; then, holding the database lock, an
    existing database is checked to be empty (read only), the schema is
    created or migrated, and :func:`.export_load.load` writes everything in one
    transaction. A database this call created is removed again if the import fails.

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
                    if run_op(conn, schema.table_names(SQLITE)):  # else like a new file
                        schema_version(conn, str(db))
                        run_op(conn, require_empty(SQLITE, str(db)))
                finally:
                    conn.close()
            except sqlite3.Error as exc:
                raise BackupError(f"{db} is not a usable SQLite database ({exc})") from None
        try:
            SqliteStore(db)._migrate()  # the server's own schema creation and migrations
            conn = _connect(db)
            try:
                conn.execute("PRAGMA foreign_keys=ON")
                with transaction(conn):
                    run_op(conn, load(SQLITE, export, str(db)))
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


async def _pg_connect(url: str) -> asyncpg.Connection[asyncpg.Record]:
    try:
        return await asyncpg.connect(url)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
        raise BackupError(f"cannot open the PostgreSQL database {redact_url(url)}: {exc}") from None


async def export_postgres(url: str, target: str | Path) -> Counts:
    """Write the JSON export of the PostgreSQL database at ``url`` to ``target`` (0600,
    atomic), in the same format as :func:`export_database`.

    Reads one snapshot (a read-only ``REPEATABLE READ`` transaction), so it may
    run while servers run.

    Raises:
        BackupError: unreachable, not a Hubbub database of the current schema,
            or PostgreSQL failed (the message never shows the password).
        OSError: the target cannot be written.
    """
    shown = redact_url(url)
    conn = await _pg_connect(url)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            document = await run_pg(conn, dump(POSTGRES, what=shown))
    except (asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
        raise BackupError(f"export of {shown} failed: {exc}") from None
    finally:
        await conn.close()
    write_document(document, Path(target))
    return document_counts(document)


async def import_postgres(
    source: str | Path, url: str, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> Counts:
    """Import the export file ``source`` into the new or empty PostgreSQL database at
    ``url``, with the rules of :func:`import_database`.

    The file is validated first; then one transaction creates or migrates the
    schema, checks the database is empty (the tables locked against writers)
    and loads everything, so a refusal or failure leaves the database as it was.
    Stop the servers first.

    Raises:
        BackupError: the file is not a valid export; the database is
            unreachable, not empty or of a newer schema; or PostgreSQL failed.
    """
    export = read_export(source, max_message_bytes=max_message_bytes)
    shown = redact_url(url)
    conn = await _pg_connect(url)
    try:
        async with conn.transaction():
            try:
                await run_pg(conn, schema.migrate(POSTGRES))
            except RuntimeError as exc:  # a newer schema
                raise BackupError(f"{shown}: {exc}") from None
            await run_pg(conn, load(POSTGRES, export, shown))
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise BackupError(f"import into {shown} failed: {exc}") from None
    finally:
        await conn.close()
    return export.counts
