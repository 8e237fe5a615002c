"""Validation of an export document: the format and the live API's rules, writing nothing.

:func:`parse_export` checks a document completely and returns an
:class:`~.export_format.Export`; :func:`read_export` reads and checks a file. A
text message is held to the live send check (:func:`.sending.check_send`) and an
account to the live account rules, so an import cannot create what Register and
send would refuse.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from . import usernames
from .auth import check_display_name
from .backup_errors import BackupError, ExportFormatError
from .errors import HubbubError, InvalidArgument
from .export_format import (
    BUILTIN_BOTS,
    DEFAULT_MAX_MESSAGE_BYTES,
    EPOCH,
    EXPORT_FORMAT,
    EXPORT_VERSION,
    KIND_NAMES,
    KINDS_BY_NAME,
    MS,
    PASSWORD_HASH_PREFIX,
    Export,
    GroupRecord,
    MessageRecord,
    UserRecord,
)
from .models import EntryKind
from .passwords import UNUSABLE_HASH
from .sending import check_send


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
    return (when - EPOCH) // MS


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


def _user_rules(raw: Any, user: UserRecord, who: str) -> None:
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


def _message_rules(message: MessageRecord, who: str, max_message_bytes: int) -> None:
    """The live API's send rules for one imported message (``who`` names the record):
    a text passes the live send check (:func:`.sending.check_send`: a client id of 1-128
    characters not starting with '~', the server's own ids; a body of 1 to
    ``max_message_bytes`` UTF-8 bytes), worded as the live refusal without its ``send.``
    prefix, and has exactly one of recipient and group; receipts and group updates have
    server ids ('~…') and no body."""
    if message.kind is EntryKind.TEXT:
        try:
            check_send(message.client_id, message.body, max_message_bytes)
        except InvalidArgument as exc:
            problem = "; ".join(
                f"{v.field.removeprefix('send.')}: {v.description}" for v in exc.violations
            )
            raise _bad(who, problem or exc.message) from None
        if (message.recipient is None) == (message.group is None):
            raise _bad(who, "must have exactly one of recipient and group")
    elif message.body or not message.client_id.startswith("~"):
        raise _bad(who, f"a {KIND_NAMES[message.kind]} has no body and a server id ('~…')")


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

    users: dict[str, UserRecord] = {}
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
        users[name] = UserRecord(
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

    groups: dict[str, GroupRecord] = {}
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
        groups[name] = GroupRecord(
            name, _time(raw, "created_at", where), creator, tuple(members.items())
        )

    messages: dict[int, MessageRecord] = {}
    client_ids: set[tuple[str, str]] = set()
    for i, raw in enumerate(_list(document, "messages")):
        where = f"messages[{i}]"
        mid = _int(raw, "id", where, low=1)
        if mid in messages:
            raise _bad(f"{where}.id", f"duplicate message id {mid}")
        kind_name = _get(raw, "kind", where)
        if kind_name not in KINDS_BY_NAME:
            raise _bad(f"{where}.kind", f"must be one of {', '.join(sorted(KINDS_BY_NAME))}")
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
        messages[mid] = MessageRecord(
            mid,
            KINDS_BY_NAME[kind_name],
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
