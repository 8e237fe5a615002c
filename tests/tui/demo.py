"""A fixed conversation set for snapshot tests: fixed times (UTC), no network.

`demo_state()` builds the ChatState through its public methods, as the live client
does from server events; `demo_app()` shows it in a HubbubApp whose chat is not live.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from hubbub.client import Client, DeliveryReceipt, IncomingMessage, SendConfirmed, UserInfo
from hubbub.client.tui.app import HubbubApp, TuiConfig
from hubbub.client.tui.conversations import ConversationKey
from hubbub.client.tui.model import ChatState
from hubbub.client.tui.session import ChatSession

T0 = datetime(2026, 5, 3, 16, 40, tzinfo=UTC)
SERVER = "chat.example.org:50051"
#: An address nothing listens on: the demo chat never uses its client.
NOWHERE = "127.0.0.1:9"

_ids = iter(range(100, 10_000))
_seqs = iter(range(1, 10_000))


def _message(
    sender: str, body: str, when: datetime, *, group: str = "", display: str = ""
) -> IncomingMessage:
    return IncomingMessage(
        sequence=next(_seqs),
        message_id=next(_ids),
        sender=sender,
        sender_display_name=display,
        recipient="alice" if not group else "",
        body=body,
        send_time=when,
        group=group,
    )


def clock() -> datetime:
    """The demo's "now"."""
    return T0 + timedelta(days=1, hours=1)


def demo_state() -> ChatState:
    """alice's conversations: bob (open, new messages marked), #team (unread), carol, echobot."""
    state = ChatState("alice", "Alice Liddell")
    state.set_users(
        [
            UserInfo("alice", "Alice Liddell", True),
            UserInfo("bob", "Bob", True),
            UserInfo("carol", "Carol", False),
            UserInfo("dave", "", True),
            UserInfo("echobot", "", True, bot=True),
        ]
    )
    state.set_groups([("team", ("alice", "bob", "carol", "dave"))])
    bob = ConversationKey.user("bob")
    team = ConversationKey.group("team")
    state.add_history(
        bob,
        [
            _message("bob", "are you coming to the review tomorrow?", T0, display="Bob"),
        ],
        "",
    )
    state.open(bob)
    state.sending(bob, "c-1", "yes, at ten", T0 + timedelta(minutes=2), "bob")
    state.confirmed(SendConfirmed("c-1", 900, 0, T0 + timedelta(minutes=2), False, True, "bob"))
    state.delivered(DeliveryReceipt(next(_seqs), 900, "c-1", "bob", T0 + timedelta(minutes=3)))
    state.add_history(
        ConversationKey.user("carol"),
        [_message("carol", "thanks for the notes!", T0 - timedelta(days=2), display="Carol")],
        "",
    )
    state.conversation(ConversationKey.user("echobot"), "echobot")
    state.add_history(ConversationKey.user("echobot"), [], "")
    state.open(team)
    state.add_history(
        team,
        [_message("carol", "agenda is in the wiki", T0 - timedelta(hours=3), group="team")],
        "",
    )
    state.open(ConversationKey.user("carol"))
    day2 = T0 + timedelta(days=1)
    state.receive(
        _message("bob", "morning! the room changed:\nit is B-204 now", day2, display="Bob")
    )
    state.receive(_message("bob", "bring the slides", day2 + timedelta(minutes=1), display="Bob"))
    for minute, (sender, body) in enumerate(
        [("dave", "build is green"), ("carol", "deploying at noon"), ("dave", "👍")]
    ):
        state.receive(_message(sender, body, day2 + timedelta(minutes=5 + minute), group="team"))
    state.open(bob)
    state.sending(bob, "c-2", "on my way", day2 + timedelta(minutes=30), "bob")
    return state


def demo_app(tmp: Path, state: ChatState | None = None) -> tuple[HubbubApp, ChatState]:
    """An app showing `state` (default `demo_state()`) without a live chat."""

    async def connect() -> Client:
        raise AssertionError("the demo app does not connect")

    config = TuiConfig(
        SERVER,
        connect,
        session_file=tmp / "none.json",
        use_saved_session=False,
        tz=UTC,
        clock=clock,
    )
    return HubbubApp(config, autostart=False), state or demo_state()


async def show(app: HubbubApp, state: ChatState) -> None:
    """Put the demo chat on screen (call inside the app's event loop)."""
    session = ChatSession(Client(NOWHERE))
    await app.show_chat(state, session, live=False)
