"""The Redis broker's JSON events carry every field of an inbox entry, alone or batched."""

from __future__ import annotations

from datetime import UTC, datetime

from hubbub.server.broker_redis import decode, encode_message, encode_messages
from hubbub.server.models import EntryKind, GroupAction, StoredMessage

WHEN = datetime(2026, 12, 1, 6, 0, 0, 123000, tzinfo=UTC)

RECEIPT = StoredMessage(
    sequence=7,
    message_id=42,
    sender="bob",
    sender_display_name="Bob",
    recipient="alice",
    body="",
    sent_at=WHEN,
    client_id="c3",
    kind=EntryKind.RECEIPT,
    ref_message_id=41,
    ref_message_ids=(39, 40, 41),
    ref_client_ids=("c1", "c2", "c3"),
)
UPDATE = StoredMessage(
    sequence=8,
    message_id=43,
    sender="carol",
    sender_display_name="Carol",
    recipient="alice",
    body="",
    sent_at=WHEN,
    client_id="~group:43",
    kind=EntryKind.GROUP_UPDATE,
    group="team",
    action=GroupAction.MEMBERS_ADDED,
    members=("dave",),
)


def test_a_cumulative_receipt_survives_one_event() -> None:
    """A receipt published alone decodes with all the messages it covers."""
    assert decode(encode_message(RECEIPT)) == RECEIPT


def test_a_batch_of_entries_survives_one_messages_event_in_order() -> None:
    """A batch published as one ``messages`` event decodes to the same entries, in order,
    cumulative receipt lists and group updates included."""
    events = encode_messages([RECEIPT, UPDATE])
    assert len(events) == 1
    assert decode(events[0]) == [RECEIPT, UPDATE]
