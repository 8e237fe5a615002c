"""Welcome and presence encodings built from cached per-user wire forms stay exact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hubbub.server import grpc_convert as convert
from hubbub.server.events import OutPresence, OutWelcome
from hubbub.server.models import InboxCursor, PresenceChange, UserView
from hubbub.server.presence_feed import PresenceFeed
from hubbub.v1 import messenger_pb2 as pb

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def welcome(online: list[UserView]) -> pb.Welcome:
    """The encoded Welcome of user ``online[0]`` listing ``online``."""
    event = OutWelcome(
        online[0], online, InboxCursor(last_sequence=2, acked_sequence=1), "h", "r", T0
    )
    return convert.server_event(event).welcome


def test_welcome_lists_every_online_user_in_order_with_all_fields() -> None:
    """The online list is the users given, in order, each as convert.user encodes it."""
    views = [
        UserView("amy", "Amy", True, T0, False),
        UserView("echobot", "Echo Bot", True, None, True),
        UserView("zed", "", True, T0 + timedelta(seconds=3), False),
    ]
    for _ in range(2):  # the second time from the cache
        got = welcome(views)
        assert list(got.online_users) == [convert.user(v) for v in views]
        assert got.user == convert.user(views[0])
        assert (got.acked_sequence, got.last_sequence, got.history_id) == (1, 2, "h")
        assert got.resume_token == "r" and got.HasField("session_expire_time")


def test_a_new_view_or_change_of_a_user_is_encoded_afresh() -> None:
    """A user's cached form is used only for the very object it was built from."""
    before = UserView("bob", "Bob", True, T0, False)
    after = UserView("bob", "Robert", True, T0, False)
    assert welcome([before]).online_users[0].display_name == "Bob"
    assert welcome([after]).online_users[0].display_name == "Robert"
    went = OutPresence(PresenceChange(UserView("bob", "Bob", False, T0, False), T0))
    came = OutPresence(PresenceChange(UserView("bob", "Bob", True, T0, False), T0))
    assert convert.server_event(went).presence_change.user.presence == pb.PRESENCE_OFFLINE
    assert convert.server_event(came).presence_change.user.presence == pb.PRESENCE_ONLINE


def test_welcome_from_a_chunked_online_list_matches_user_by_user() -> None:
    """A feed's chunked online list encodes to the same users, before and after a change."""
    feed = PresenceFeed()
    for i in range(1200):
        at = T0 + timedelta(seconds=i)
        feed.apply(PresenceChange(UserView(f"u{i:04}", f"U{i}", True, at, False), at))
    for _ in range(2):
        online = feed.online()
        event = OutWelcome(online[0], online, InboxCursor(last_sequence=0, acked_sequence=0))
        got = convert.server_event(event).welcome.online_users
        assert list(got) == [convert.user(v) for v in online]
        feed.apply(PresenceChange(UserView("u0600", "U600", False, T0, False), T0))
