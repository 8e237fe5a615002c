"""The JSON export format (``hubbub-export`` version 1), the same for every backend.

One module per concept, gathered here for :mod:`.backup`:

* :mod:`.export_format`: the format's constants, times, :class:`Counts`, the
  records of a validated :class:`Export`, :func:`write_document`;
* :mod:`.export_dump`: :func:`dump`, the operation (see :mod:`.sql`) that reads a
  database into the export document; run it in one read snapshot;
* :mod:`.export_validation`: :func:`parse_export` validates a document completely
  against the format and the live API's rules (the send check of
  :func:`.sending.check_send`), writing nothing; :func:`read_export` reads a file;
* :mod:`.export_load`: :func:`load`, the operation that writes a validated
  :class:`Export` into a new or empty current-schema database, in the caller's
  one transaction.

:mod:`.backup` runs them on SQLite files and PostgreSQL URLs. The format is
documented in the README ("Backup, restore, export, import").
"""

from __future__ import annotations

from .export_dump import count_rows, dump, recorded_version
from .export_format import (
    BUILTIN_BOTS,
    BUILTIN_USERS,
    DEFAULT_MAX_MESSAGE_BYTES,
    EXPORT_FORMAT,
    EXPORT_VERSION,
    PASSWORD_HASH_PREFIX,
    Counts,
    Export,
    document_counts,
    write_document,
)
from .export_load import load, require_empty
from .export_validation import parse_export, read_export

__all__ = [
    "BUILTIN_BOTS",
    "BUILTIN_USERS",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "PASSWORD_HASH_PREFIX",
    "Counts",
    "Export",
    "count_rows",
    "document_counts",
    "dump",
    "load",
    "parse_export",
    "read_export",
    "recorded_version",
    "require_empty",
    "write_document",
]
