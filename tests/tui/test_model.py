"""Unit tests of the sans-I/O state of the full-screen client (no network, no Textual)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hubbub.client import (
    DeliveryReceipt,
    ErrorKind,
    EventRejected,
    GroupUpdate,
    IncomingMessage,
    SendConfirmed,
    UserInfo,
)
from hubbub.client.tui.conversations import ConversationKey, MessageEntry
from hubbub.client.tui.model import ChatState

pytestmark = pytest.mark.timeout(10)

T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
BOB = ConversationKey.user("bob")
CAROL = ConversationKey.user("carol")
TEAM = ConversationKey.group("team")


def msg(
    mid: int,
    sender: str = "bob",
    body: str = "hi",
    *,
    minutes: int = 0,
    group: str = "",
    recipient: str = "alice",
    seq: int = 0,
    cid: str = "",
) -> IncomingMessage:
    """A message `mid` sent `minutes` after T0."""
    return IncomingMessage(
        seq or mid, mid, sender, "", recipient, body, T0 + timedelta(minutes=minutes), cid, group
    )


def bodies(state: ChatState, key: ConversationKey) -> list[str]:
    """The bodies of `key`'s messages in display order."""
    return [e.body for e in state.conversations[key].messages()]


def test_message_to_another_conversation_counts_unread_and_sets_the_marker() -> None:
    """A message for a conversation that is not open is unread until it is opened; opening
    puts the "new messages" marker before the first unread one and clears the count."""
    state = ChatState("alice")
    state.open(CAROL)
    first = state.receive(msg(1, minutes=1))
    state.receive(msg(2, minutes=2))
    assert first.unread and first.key == BOB
    assert state.conversations[BOB].unread == 2 and state.total_unread() == 2
    opened = state.open(BOB)
    assert opened.unread == 0
    first_entry = opened.messages()[0]
    assert opened.marker_order == first_entry.order
    state.open(CAROL)
    assert state.conversations[BOB].marker_order is None


def test_message_to_the_open_conversation_is_not_unread() -> None:
    """What arrives in the open conversation is read at once."""
    state = ChatState("alice")
    state.open(BOB)
    arrival = state.receive(msg(1))
    assert arrival.new and not arrival.unread
    assert state.conversations[BOB].unread == 0


def test_the_same_message_twice_is_stored_once() -> None:
    """A message replayed after a reconnect, or seen again in a history page, is kept once."""
    state = ChatState("alice")
    state.receive(msg(1, body="once"))
    again = state.receive(msg(1, body="once", seq=9))
    assert not again.new and not again.unread
    state.add_history(BOB, [msg(1, body="once"), msg(0 + 5, minutes=-5, body="older")], "tok")
    assert bodies(state, BOB) == ["older", "once"]
    assert state.conversations[BOB].unread == 1


def test_conversations_are_ordered_by_last_activity() -> None:
    """Newest activity first; conversations without messages after them, by name."""
    state = ChatState("alice")
    state.conversation(ConversationKey.user("zed"), "zed")
    state.conversation(ConversationKey.user("amy"), "amy")
    state.receive(msg(1, "bob", minutes=1))
    state.receive(msg(2, "carol", minutes=2))
    state.receive(msg(3, "dave", minutes=3, group="team", recipient=""))
    assert [c.title for c in state.ordered()] == ["team", "carol", "bob", "amy", "zed"]
    state.receive(msg(4, "bob", minutes=4))
    assert [c.title for c in state.ordered()][:2] == ["bob", "team"]


def test_neighbour_wraps_around_the_sidebar_order() -> None:
    """ctrl+n / ctrl+p step through the sidebar order and wrap at either end."""
    state = ChatState("alice")
    state.receive(msg(1, "bob", minutes=1))
    state.receive(msg(2, "carol", minutes=2))
    assert state.neighbour(1) == CAROL  # nothing open yet: the first
    state.open(CAROL)
    assert state.neighbour(1) == BOB
    assert state.neighbour(-1) == BOB
    state.open(BOB)
    assert state.neighbour(1) == CAROL


def test_own_send_goes_sending_sent_delivered() -> None:
    """My direct message is shown at once ("sending"), gets its id when stored ("sent")
    and its ✓ when the recipient's client acknowledged it ("delivered")."""
    state = ChatState("alice")
    state.sending(BOB, "c1", "hello", T0, "bob")
    entry = state.conversations[BOB].messages()[0]
    assert (entry.state, entry.own, entry.message_id) == ("sending", True, 0)
    state.confirmed(SendConfirmed("c1", 42, 7, T0 + timedelta(seconds=1), False, True, "bob"))
    assert (entry.state, entry.message_id) == ("sent", 42)
    state.delivered(DeliveryReceipt(3, 42, "c1", "bob", T0))
    assert entry.state == "delivered"


def test_cumulative_receipt_ticks_every_message_it_covers() -> None:
    """One DeliveryReceipt listing several of my messages marks each of them delivered,
    also the one whose id only the client knew (not yet confirmed)."""
    state = ChatState("alice")
    for n in (1, 2, 3):
        state.sending(BOB, f"c{n}", f"hello {n}", T0, "bob")
    for n in (1, 2):
        state.confirmed(SendConfirmed(f"c{n}", 40 + n, n, T0, False, True, "bob"))
    state.delivered(DeliveryReceipt(5, 43, "c3", "bob", T0, (41, 42, 43), ("c1", "c2", "c3")))
    assert [e.state for e in state.conversations[BOB].messages()] == ["delivered"] * 3


def test_receipt_before_history_still_ticks_the_message() -> None:
    """A receipt for a message loaded later from history marks it delivered then."""
    state = ChatState("alice")
    state.delivered(DeliveryReceipt(3, 42, "c1", "bob", T0))
    state.add_history(BOB, [msg(42, "alice", "old", recipient="bob", cid="c1")], "")
    (entry,) = state.conversations[BOB].messages()
    assert entry.own and entry.state == "delivered"


def test_refused_send_is_marked_failed() -> None:
    """A send the server refuses stays visible, marked failed."""
    state = ChatState("alice")
    state.sending(BOB, "c1", "hello", T0, "bob")
    key = state.rejected(
        EventRejected(0, "c1", ErrorKind.NOT_FOUND, "USER_NOT_FOUND", "no such user")
    )
    assert key == BOB
    assert state.conversations[BOB].messages()[0].state == "failed"
    assert not state.is_pending("c1")


def test_random_send_lands_in_the_recipients_conversation() -> None:
    """A random send appears in the conversation of the user the server picked."""
    state = ChatState("alice")
    state.sending(None, "r1", "anyone?", T0)
    assert state.conversations == {}
    key = state.confirmed(SendConfirmed("r1", 5, 1, T0, False, True, "carol"), "anyone?")
    assert key == CAROL
    (entry,) = state.conversations[CAROL].messages()
    assert (entry.body, entry.state, entry.message_id) == ("anyone?", "sent", 5)


def test_history_confirms_a_pending_own_message_by_client_id() -> None:
    """My unconfirmed message seen in a history page (same client id) is not doubled."""
    state = ChatState("alice")
    state.sending(BOB, "c1", "hello", T0, "bob")
    state.add_history(BOB, [msg(42, "alice", "hello", recipient="bob", cid="c1")], "")
    (entry,) = state.conversations[BOB].messages()
    assert entry.message_id == 42 and entry.state == "sent"


def test_history_pages_merge_in_order_and_finish() -> None:
    """Pages (newest first) merge oldest-first; the last page marks the history complete."""
    state = ChatState("alice")
    state.add_history(BOB, [msg(i, minutes=i) for i in (5, 4, 3)], "next")
    assert not state.conversations[BOB].history_complete
    state.add_history(BOB, [msg(i, minutes=i) for i in (2, 1)], "")
    assert [e.message_id for e in state.conversations[BOB].messages()] == [1, 2, 3, 4, 5]
    assert state.conversations[BOB].history_complete


def test_group_updates_add_and_remove_groups() -> None:
    """A group I am added to appears; one I leave disappears (and is no longer open)."""
    state = ChatState("alice")
    state.group_changed(GroupUpdate(1, "team", "created", "bob", ("alice", "bob"), T0))
    assert state.conversations[TEAM].members == ("alice", "bob")
    state.group_changed(GroupUpdate(2, "team", "added", "bob", ("carol",), T0))
    assert state.conversations[TEAM].members == ("alice", "bob", "carol")
    state.open(TEAM)
    state.group_changed(GroupUpdate(3, "team", "left", "alice", ("alice",), T0))
    assert TEAM not in state.conversations and state.active is None


def test_presence_and_names_for_completion() -> None:
    """Presence follows Welcome and PresenceChanged; completion knows users and groups."""
    state = ChatState("alice")
    state.set_users([UserInfo("alice"), UserInfo("bob", "Bob"), UserInfo("carol")])
    state.mark_online([UserInfo("alice", online=True), UserInfo("bob", online=True)])
    assert state.online("BOB") and not state.online("carol")
    assert state.display_name("bob") == "Bob"
    state.set_presence(UserInfo("bob", online=False))
    assert not state.online("bob") and state.display_name("bob") == "Bob"
    state.set_groups([("team", ("alice", "bob"))])
    assert state.known_names() == ["bob", "carol"]
    assert state.group_names() == ["team"]


def test_notes_go_to_the_open_conversation_or_the_console() -> None:
    """Client notes land in the open conversation, or in the console when none is open."""
    state = ChatState("alice")
    state.note("* nothing open", T0)
    assert [n.text for n in state.console] == ["* nothing open"]
    state.open(BOB)
    state.note("* in bob", T0)
    notes = [e for e in state.conversations[BOB].entries if not isinstance(e, MessageEntry)]
    assert [n.text for n in notes] == ["* in bob"]
