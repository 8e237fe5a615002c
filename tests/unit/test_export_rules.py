"""The import's validation of a text message is the live send check, worded the same."""

from __future__ import annotations

from typing import Any

import pytest

from hubbub.server.backup_errors import ExportFormatError
from hubbub.server.errors import InvalidArgument
from hubbub.server.export_validation import parse_export
from hubbub.server.sending import check_send

LIMIT = 65536
WHEN = "2026-01-01T00:00:00.000Z"


def document(client_id: str, body: str) -> dict[str, Any]:
    """A valid export of alice's one text to bob, with ``client_id`` and ``body``."""

    def user(name: str, last: int) -> dict[str, Any]:
        return {
            "username": name,
            "display_name": name.title(),
            "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
            "bot": False,
            "created_at": WHEN,
            "last_sequence": last,
            "acked_sequence": 0,
        }

    return {
        "format": "hubbub-export",
        "version": 1,
        "exported_at": WHEN,
        "users": [user("alice", 0), user("bob", 1)],
        "groups": [],
        "messages": [
            {
                "id": 1,
                "kind": "text",
                "sender": "alice",
                "recipient": "bob",
                "group": None,
                "client_id": client_id,
                "body": body,
                "sent_at": WHEN,
                "ref": None,
                "meta": None,
            }
        ],
        "inbox": [{"user": "bob", "sequence": 1, "message": 1}],
    }


def test_the_document_used_below_is_valid() -> None:
    """The base document imports (so each refusal below is the rule under test)."""
    assert parse_export(document("c1", "hi"), max_message_bytes=LIMIT).counts.messages == 1


@pytest.mark.parametrize(
    ("client_id", "body"),
    [("c1", "x" * (LIMIT + 1)), ("c1", ""), ("c" * 129, "hi"), ("~mine", "hi")],
    ids=["body-too-long", "body-empty", "client-id-too-long", "client-id-reserved"],
)
def test_import_refuses_a_text_with_the_live_send_rule(client_id: str, body: str) -> None:
    """An imported text breaking the send rule is refused with the live refusal's field
    and description, naming the record."""
    with pytest.raises(InvalidArgument) as live:
        check_send(client_id, body, LIMIT)
    (violation,) = live.value.violations
    with pytest.raises(ExportFormatError) as imported:
        parse_export(document(client_id, body), max_message_bytes=LIMIT)
    field = violation.field.removeprefix("send.")
    expected = f"messages[0] (id 1): {field}: {violation.description}"
    assert str(imported.value) == f"not a valid Hubbub export: {expected}"
