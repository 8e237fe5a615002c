"""The JSON export format (``hubbub-export`` version 1), the same for every backend.

* :func:`dump` is the operation (see :mod:`.sql`) that reads a database into
  the export document; run it in one read snapshot.
* :func:`parse_export` validates a document completely against the format and
  the live API's rules, writing nothing; :func:`read_export` reads a file.
* :func:`load` is the operation that writes a validated :class:`Export` into a
  new or empty current-schema database, in the caller's one transaction.

:mod:`.backup` runs them on SQLite files and PostgreSQL URLs. The format is
documented in the README ("Backup, restore, export, import").
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from . import usernames
from .auth import check_display_name
from .backup_errors import BackupError, ExportFormatError
from .config import ServerConfig
from .errors import HubbubError
from .models import EntryKind
from .passwords import UNUSABLE_HASH
from .schema import SCHEMA_VERSION, set_history_id, table_names
from .sending import CLIENT_ID_MAX
from .sql import Dialect, Op, execute, many, rows, value
from .store_sqlite import create_private_file, make_private_dir

EXPORT_FORMAT = "hubbub-export"
EXPORT_VERSION = 1
BUILTIN_USERS = frozenset({"echobot"})  # created by every server start; allowed in an "empty" DB
BUILTIN_BOTS = frozenset({"echobot"})  # the only accounts that may be bots (hash "!", no login)
DEFAULT_MAX_MESSAGE_BYTES = ServerConfig().max_message_bytes  # the server's default body limit
PASSWORD_HASH_PREFIX = "$argon2"  # what the server stores (PHC string) besides UNUSABLE_HASH

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_KIND_NAMES = {kind: kind.name.lower() for kind in EntryKind}
_KINDS_BY_NAME = {name: kind for kind, name in _KIND_NAMES.items()}


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


# -- export ------------------------------------------------------------------------------------


def _iso(ms: int) -> str:
    """Milliseconds since the epoch → ISO 8601 UTC with milliseconds, e.g. ``…T12:00:00.123Z``."""
    return (_EPOCH + ms * _MS).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
            "created_at": _iso(created),
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
        members.setdefault(group_id, []).append({"username": name, "joined_at": _iso(joined)})
    groups = [
        {
            "name": name,
            "created_at": _iso(created),
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
        "exported_at": _iso(((now or datetime.now(UTC)) - _EPOCH) // _MS),
        "users": users,
        "groups": groups,
        "messages": messages,
        "inbox": inbox,
    }


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


# -- import ------------------------------------------------------------------------------------


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
