"""``hubbub-server``: run a Hubbub node, or back up, restore, export and import its database.

``hubbub-server [FLAGS]`` (or ``hubbub-server serve [FLAGS]``) serves;
``backup``, ``restore``, ``export`` and ``import`` are the operations of
:mod:`hubbub.server.backup`. Each prints one summary line and exits 0, or one
line on stderr and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
from collections.abc import Callable

from . import backup, logs
from . import config as config_module
from .app import serve
from .store_sqlite import SCHEMA_VERSION


def _database_flag(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: when absent here, the top-level --database / HUBBUB_DATABASE applies.
    parser.add_argument(
        "--database",
        default=argparse.SUPPRESS,
        help="SQLite database file (default: HUBBUB_DATABASE or ./data/hubbub.db)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``hubbub-server`` argument parser (server flags plus the subcommands)."""
    parser = argparse.ArgumentParser(
        prog="hubbub-server",
        description="Run a Hubbub messenger server (gRPC). Every flag also reads HUBBUB_<FLAG>. "
        "With no command it serves.",
    )
    config_module.add_arguments(parser)
    commands = parser.add_subparsers(dest="command", metavar="[COMMAND]", title="commands")
    serve_parser = commands.add_parser(
        "serve",
        help="run the server (the same as no command)",
        description="Run the server; the flags are those of hubbub-server itself.",
    )
    config_module.add_arguments(serve_parser)
    for action in serve_parser._actions:  # keep flags given before 'serve'
        if action.dest != "help":
            action.default = argparse.SUPPRESS

    p = commands.add_parser(
        "backup",
        help="write a consistent backup of the database, also while the server runs",
        description="Copy the database with the SQLite Online Backup API while the server "
        "may keep running; the copy is written to FILE.tmp, verified and renamed to FILE.",
    )
    p.add_argument("file", metavar="FILE", help="backup file to write (replaced if it exists)")
    _database_flag(p)

    p = commands.add_parser(
        "restore",
        help="replace the database of a stopped server with a backup",
        description="Replace the database with a verified backup FILE. The server must be "
        "stopped; a damaged or foreign file is refused and the database left untouched. "
        "An older schema is migrated when the server next starts.",
    )
    p.add_argument("file", metavar="FILE", help="backup file written by 'hubbub-server backup'")
    _database_flag(p)

    p = commands.add_parser(
        "export",
        help="write users, groups, messages and inboxes as JSON",
        description="Write the database as a JSON document (format 'hubbub-export', "
        "version 1; see README). Sessions are not exported. Safe while the server runs.",
    )
    p.add_argument("file", metavar="FILE.json", help="JSON file to write (replaced if it exists)")
    _database_flag(p)

    p = commands.add_parser(
        "import",
        help="load a JSON export into a new or empty database",
        description="Load a 'hubbub-export' JSON document into a new or empty database "
        "(no users but echobot) of a stopped server, in one transaction; the file is "
        "validated first and nothing is written if anything is wrong.",
    )
    p.add_argument("file", metavar="FILE.json", help="JSON file written by 'hubbub-server export'")
    p.add_argument(
        "--max-message-bytes",
        type=int,
        default=backup.DEFAULT_MAX_MESSAGE_BYTES,
        help="largest message body accepted, as the server's flag (default: %(default)s)",
    )
    _database_flag(p)
    return parser


def _backup(args: argparse.Namespace) -> str:
    result = backup.backup_database(args.database, args.file)
    return (
        f"backup of {args.database} written to {result.path}: {result.counts}"
        f" ({result.size_bytes} bytes, schema v{result.schema_version})"
    )


def _restore(args: argparse.Namespace) -> str:
    result = backup.restore_database(args.file, args.database)
    note = (
        f"; schema v{result.schema_version} is migrated when the server starts"
        if result.schema_version < SCHEMA_VERSION
        else ""
    )
    return f"restored {args.file} into {args.database}: {result.counts}{note}"


def _export(args: argparse.Namespace) -> str:
    counts = backup.export_database(args.database, args.file)
    return f"exported {args.database} to {args.file}: {counts}"


def _import(args: argparse.Namespace) -> str:
    counts = backup.import_database(
        args.file, args.database, max_message_bytes=args.max_message_bytes
    )
    return f"imported {args.file} into {args.database}: {counts}"


_OPERATIONS: dict[str, Callable[[argparse.Namespace], str]] = {
    "backup": _backup,
    "restore": _restore,
    "export": _export,
    "import": _import,
}


def _operate(command: str, args: argparse.Namespace) -> int:
    if getattr(args, "postgres_url", ""):
        print(
            f"hubbub-server {command}: works on the SQLite database only, not with "
            "--postgres-url / HUBBUB_POSTGRES_URL; back up PostgreSQL with pg_dump / pg_restore",
            file=sys.stderr,
        )
        return 1
    try:
        summary = _OPERATIONS[command](args)
    except (backup.BackupError, OSError, sqlite3.Error) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"hubbub-server {command}: {message}", file=sys.stderr)
        return 1
    print(summary, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = build_parser().parse_args(argv)
    if args.command in _OPERATIONS:
        return _operate(args.command, args)
    cfg = config_module.from_arguments(args)
    logs.configure(cfg.log_level, cfg.log_format)
    try:
        if sys.platform != "win32":
            import uvloop

            uvloop.run(serve(cfg))
        else:  # pragma: no cover - uvloop does not support Windows
            asyncio.run(serve(cfg))
    except KeyboardInterrupt:
        return 0
    except (RuntimeError, OSError) as exc:
        print(f"hubbub-server: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
