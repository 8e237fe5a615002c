"""The JSON export format (``hubbub-export`` version 1): its constants, times, records.

The same for every backend; documented in the README ("Backup, restore, export,
import"). :mod:`.export_dump` makes a document from a database,
:mod:`.export_validation` checks one and turns it into an :class:`Export`, and
:mod:`.export_load` writes that into a database.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .config import ServerConfig
from .models import EntryKind
from .store_sqlite import create_private_file, make_private_dir

EXPORT_FORMAT = "hubbub-export"
EXPORT_VERSION = 1
BUILTIN_USERS = frozenset({"echobot"})  # created by every server start; allowed in an "empty" DB
BUILTIN_BOTS = frozenset({"echobot"})  # the only accounts that may be bots (hash "!", no login)
DEFAULT_MAX_MESSAGE_BYTES = ServerConfig().max_message_bytes  # the server's default body limit
PASSWORD_HASH_PREFIX = "$argon2"  # what the server stores (PHC string) besides UNUSABLE_HASH

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)
KIND_NAMES = {kind: kind.name.lower() for kind in EntryKind}  # EntryKind -> its JSON name
KINDS_BY_NAME = {name: kind for kind, name in KIND_NAMES.items()}


def iso_time(ms: int) -> str:
    """Milliseconds since the epoch → ISO 8601 UTC with milliseconds, e.g. ``…T12:00:00.123Z``."""
    return (EPOCH + ms * MS).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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


def document_counts(document: dict[str, Any]) -> Counts:
    """Row counts of an export document."""
    return Counts(
        len(document["users"]),
        len(document["groups"]),
        len(document["messages"]),
        len(document["inbox"]),
    )


def write_document(document: dict[str, Any], target: Path) -> None:
    """Write ``document`` as UTF-8 JSON to ``target`` (0600; ``TARGET.tmp``, fsync, rename)."""
    make_private_dir(target.parent)
    tmp = target.with_name(target.name + ".tmp")
    try:
        create_private_file(tmp)  # 0600: the export holds every password hash and message
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(document, f, ensure_ascii=False, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# -- a validated export ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserRecord:
    """One user of an export (times in ms since the epoch)."""

    username: str
    display_name: str
    password_hash: str
    bot: bool
    created_ms: int
    last_sequence: int
    acked_sequence: int


@dataclass(frozen=True, slots=True)
class GroupRecord:
    """One group of an export; ``members`` are (username, joined ms)."""

    name: str
    created_ms: int
    created_by: str | None
    members: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """One message of an export; ``meta`` is its JSON text or None."""

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
    """A validated export, ready for :func:`.export_load.load` (times in ms since the epoch)."""

    users: tuple[UserRecord, ...]
    groups: tuple[GroupRecord, ...]
    messages: tuple[MessageRecord, ...]
    inbox: tuple[tuple[str, int, int], ...]  # (username, sequence, message id)

    @property
    def counts(self) -> Counts:
        """Row counts of the export."""
        return Counts(len(self.users), len(self.groups), len(self.messages), len(self.inbox))
