"""Issue 8 hole 8: ``hubbub-server import`` applies the live API's rules, not only the structure."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hubbub.server import backup as bk
from hubbub.server import cli
from hubbub.server.config import ServerConfig

from ..integration.conftest import close_node, open_chat, open_node, register_login

pytestmark = pytest.mark.timeout(120)
Doc = dict[str, Any]


@pytest.fixture(scope="module")
def valid_export(tmp_path_factory: pytest.TempPathFactory) -> Doc:
    """The export of a live database: echobot, alice, bob and alice → bob messages."""
    db = tmp_path_factory.mktemp("source") / "hubbub.db"

    async def make() -> Doc:
        node = await open_node(ServerConfig(port=0, database=str(db), grace_s=1.0))
        try:
            alice = await register_login(node, "alice", "Alice")
            await register_login(node, "bob", "Bob")
            chat = await open_chat(node, alice)
            for i in range(3):
                await chat.send("bob", f"hello {i}", f"c{i}")
                await chat.next("send_result")
            await chat.close()
            await asyncio.sleep(0.2)
        finally:
            await close_node(node)
        bk.export_database(db, db.with_name("e.json"))
        return dict(json.loads(db.with_name("e.json").read_text(encoding="utf-8")))

    return asyncio.run(make())


def user(doc: Doc, name: str) -> dict[str, Any]:
    """The user record named ``name``."""
    return next(u for u in doc["users"] if u["username"] == name)


def index(doc: Doc, name: str) -> int:
    """The position of user ``name`` in ``users``."""
    return [u["username"] for u in doc["users"]].index(name)


def known_password_echobot(doc: Doc) -> str:
    """echobot gets alice's (known) password hash. Returns the record the refusal must name."""
    user(doc, "echobot")["password_hash"] = user(doc, "alice")["password_hash"]
    return f'users[{index(doc, "echobot")}] (username "echobot")'


def fake_echo_bot(doc: Doc) -> str:
    """alice becomes a bot named 'Echo Bot'. Returns the record the refusal must name."""
    user(doc, "alice").update(bot=True, display_name="Echo Bot")
    return f'users[{index(doc, "alice")}] (username "alice"): bot'


def huge_display_name_with_escapes(doc: Doc) -> str:
    """bob's display name: 100,017 characters with escape codes; returns the record."""
    name = "\x1b[2J\x1b[1;31m" + "A" * 100_002 + "\x1b[0m"
    assert len(name) == 100_017
    user(doc, "bob")["display_name"] = name
    return f'users[{index(doc, "bob")}] (username "bob"): display_name'


def escape_codes_in_display_name(doc: Doc) -> str:
    """bob's display name forges a line (escape code, U+2028); returns the record."""
    user(doc, "bob")["display_name"] = "Bob\x1b[31m\u2028[12:00] admin"
    return f'users[{index(doc, "bob")}] (username "bob"): display_name'


def megabyte_body(doc: Doc) -> str:
    """A text message with a 1 MiB body. Returns the record the refusal must name."""
    text = next(i for i, m in enumerate(doc["messages"]) if m["kind"] == "text")
    doc["messages"][text]["body"] = "x" * (1 << 20)
    return f"messages[{text}] (id {doc['messages'][text]['id']}): body: 1048576 bytes"


def sequence_gap(doc: Doc) -> str:
    """bob's inbox loses sequence 2 (a gap). Returns the record the refusal must name."""
    first = next(i for i, e in enumerate(doc["inbox"]) if e["user"] == "bob" and e["sequence"] == 2)
    del doc["inbox"][first]
    return f'users[{index(doc, "bob")}] (username "bob"): inbox: sequence 2 '


def look_alike_user(doc: Doc) -> str:
    """A Cyrillic 'аlice' next to alice. Returns the record the refusal must name."""
    doc["users"].append(
        {**user(doc, "bob"), "username": "аlice", "last_sequence": 0, "acked_sequence": 0}
    )  # Cyrillic а
    return f'users[{len(doc["users"]) - 1}] (username "аlice"): looks like users['


def reserved_name(doc: Doc) -> str:
    """An ordinary user named 'admin'. Returns the record the refusal must name."""
    doc["users"].append(
        {**user(doc, "bob"), "username": "admin", "last_sequence": 0, "acked_sequence": 0}
    )
    return f'users[{len(doc["users"]) - 1}] (username "admin"): the name is reserved'


def reserved_look_alike(doc: Doc) -> str:
    """An ordinary user named like echobot in Cyrillic. Returns the record the refusal must name."""
    doc["users"].append(
        {**user(doc, "bob"), "username": "есhobot", "last_sequence": 0, "acked_sequence": 0}
    )  # Cyrillic е, с
    return f'users[{len(doc["users"]) - 1}] (username "есhobot"): the name is reserved'


def server_client_id(doc: Doc) -> str:
    """A text message with a server-style client id. Returns the record the refusal must name."""
    text = next(i for i, m in enumerate(doc["messages"]) if m["kind"] == "text")
    doc["messages"][text]["client_id"] = "~receipt:1"
    return f"messages[{text}] (id {doc['messages'][text]['id']}): client_id"


def plaintext_password(doc: Doc) -> str:
    """bob's password hash is a plaintext password. Returns the record the refusal must name."""
    user(doc, "bob")["password_hash"] = "hunter2"
    return f'users[{index(doc, "bob")}] (username "bob"): password_hash'


RULES: dict[str, Callable[[Doc], str]] = {
    "known-password-echobot": known_password_echobot,
    "fake-echo-bot": fake_echo_bot,
    "100017-char-display-name": huge_display_name_with_escapes,
    "escape-codes-in-name": escape_codes_in_display_name,
    "1-mib-body": megabyte_body,
    "sequence-gap": sequence_gap,
    "look-alike-user": look_alike_user,
    "reserved-name": reserved_name,
    "reserved-look-alike": reserved_look_alike,
    "server-client-id": server_client_id,
    "plaintext-password": plaintext_password,
}


def db_files(db: Path) -> dict[str, bytes]:
    """Every file of the database by name → bytes."""
    return {p.name: p.read_bytes() for p in sorted(db.parent.glob(db.name + "*"))}


@pytest.mark.parametrize("rule", list(RULES))
async def test_import_refuses_what_the_live_api_refuses(
    valid_export: Doc, tmp_path: Path, rule: str
) -> None:
    """A file breaking one live rule is refused with one line naming the record (no echo of
    the bad value); neither a new nor an existing empty database is touched."""
    doc = copy.deepcopy(valid_export)
    record = RULES[rule](doc)
    source = tmp_path / "bad.json"
    source.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    new = tmp_path / "new" / "hubbub.db"
    with pytest.raises(bk.ExportFormatError) as info:
        bk.import_database(source, new)
    message = str(info.value)
    assert record in message, message
    assert "\n" not in message and "\x1b" not in message and len(message) < 400, message
    assert not new.exists()

    existing = tmp_path / "existing" / "hubbub.db"
    node = await open_node(ServerConfig(port=0, database=str(existing), grace_s=1.0))
    await close_node(node)  # a server-made, empty database (echobot only)
    before = db_files(existing)
    with pytest.raises(bk.ExportFormatError):
        bk.import_database(source, existing)
    assert db_files(existing) == before


def test_valid_export_still_imports(valid_export: Doc, tmp_path: Path) -> None:
    """The untouched export of a live database passes every rule and imports."""
    source = tmp_path / "good.json"
    source.write_text(json.dumps(valid_export), encoding="utf-8")
    assert bk.import_database(source, tmp_path / "db" / "hubbub.db").users == 3


def test_cli_prints_one_line_and_honours_max_message_bytes(
    valid_export: Doc, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`hubbub-server import` refuses a too-long body in one stderr line (exit 1); with the
    server's larger --max-message-bytes the same file imports."""
    doc = copy.deepcopy(valid_export)
    record = megabyte_body(doc)
    source = tmp_path / "big.json"
    source.write_text(json.dumps(doc), encoding="utf-8")
    db = tmp_path / "db" / "hubbub.db"
    assert cli.main(["import", str(source), "--database", str(db)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and record in err and err.startswith("hubbub-server import: ")
    assert not db.exists()
    big = str(2 << 20)
    assert cli.main(["import", str(source), "--database", str(db), "--max-message-bytes", big]) == 0
