"""The errors of backup, restore, export and import (``hubbub-server`` commands).

Hierarchy: :class:`BackupError` (a refusal or failure; ``str()`` is one line)
with :class:`DatabaseInUse` (a server holds the database; retrying after
stopping it may succeed) and :class:`ExportFormatError` (the JSON is not a
valid export; retrying the same file never succeeds).
"""

from __future__ import annotations


class BackupError(RuntimeError):
    """A backup, restore, export or import was refused or failed; ``str()`` is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class DatabaseInUse(BackupError):
    """The database is locked by a running server (or a restore/import in progress)."""


class ExportFormatError(BackupError):
    """The JSON is not a valid Hubbub export (foreign, malformed or inconsistent)."""
