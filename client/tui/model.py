"""The sans-I/O state of the full-screen client: conversations, their messages, unread
counts, presence, delivery ticks and ordering by last activity.

`ChatState` takes the plain events of `hubbub.client` (and history pages, local
sends, notes) and changes nothing but itself: no network, no Textual, no clock (times
are passed in). The widgets draw what it holds; the tests drive it directly.

The records it holds (conversations, entries) are in `conversations.py`.
Identity: a conversation is a `ConversationKey` (`kind` "user" or "group", `name`
casefolded, since the server compares usernames and group names case-insensitively);
a message is known by its server `message_id` (or, while unconfirmed, its `client_id`),
so a message that arrives live, again after a reconnect and once more in a history
page is stored once.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from ..events import (
    DeliveryReceipt,
    EventRejected,
    GroupUpdate,
    IncomingMessage,
    SendConfirmed,
    UserInfo,
)
from .conversations import (
    Arrival,
    ConversationKey,
    ConversationState,
    Entry,
    MessageEntry,
    MessageState,
    NoteEntry,
)


@dataclass
class ChatState:
    """Everything the full-screen client shows, for the logged-in user `me`."""

    me: str
    my_display_name: str = ""
    conversations: dict[ConversationKey, ConversationState] = field(default_factory=dict)
    users: dict[str, UserInfo] = field(default_factory=dict)
    active: ConversationKey | None = None
    #: Notes shown when no conversation is open.
    console: list[NoteEntry] = field(default_factory=list)
    _counter: itertools.count[int] = field(default_factory=itertools.count)
    #: client id → conversation of my unconfirmed sends (None: random recipient).
    _pending: dict[str, ConversationKey | None] = field(default_factory=dict)
    #: Ids of my direct messages known to be delivered (a receipt may come first).
    _delivered_ids: set[int] = field(default_factory=set)
    _delivered_cids: set[str] = field(default_factory=set)

    # --- conversations

    def conversation(self, key: ConversationKey, title: str = "") -> ConversationState:
        """The conversation `key`, created (titled `title`, default the key's name) if new."""
        state = self.conversations.get(key)
        if state is None:
            state = ConversationState(key, title or key.name)
            self.conversations[key] = state
        elif title and state.title.casefold() == title.casefold():
            state.title = title
        return state

    def remove(self, key: ConversationKey) -> None:
        """Forget the conversation `key` (a group I left); the active one becomes none."""
        self.conversations.pop(key, None)
        if self.active == key:
            self.active = None

    def ordered(self) -> list[ConversationState]:
        """Conversations by last activity, newest first; those without any, by title."""
        active = sorted(
            (c for c in self.conversations.values() if c.last_activity is not None),
            key=lambda c: (c.last_activity, c.key),
            reverse=True,
        )
        idle = sorted(
            (c for c in self.conversations.values() if c.last_activity is None),
            key=lambda c: (c.title.casefold(), c.key),
        )
        return active + idle

    def open(self, key: ConversationKey) -> ConversationState:
        """Make `key` the active conversation: its unread messages count as read and the
        "new messages" marker goes before the first of them (until another is opened)."""
        if self.active is not None and self.active != key:
            previous = self.conversations.get(self.active)
            if previous is not None:
                previous.marker_order = None
        state = self.conversation(key)
        self.active = key
        state.marker_order = state.first_unread
        state.first_unread = None
        state.unread = 0
        return state

    def neighbour(self, step: int) -> ConversationKey | None:
        """The conversation `step` places after (negative: before) the active one in the
        sidebar order, wrapping around; the first one if none is active."""
        keys = [c.key for c in self.ordered()]
        if not keys:
            return None
        if self.active not in keys:
            return keys[0] if step >= 0 else keys[-1]
        return keys[(keys.index(self.active) + step) % len(keys)]

    def total_unread(self) -> int:
        """Unread messages over all conversations."""
        return sum(c.unread for c in self.conversations.values())

    # --- users and presence

    def set_users(self, users: Iterable[UserInfo]) -> None:
        """Record the users (presence, display names) listed by the server."""
        for user in users:
            self.users[user.username.casefold()] = user
            if user.username.casefold() == self.me.casefold():
                self.my_display_name = user.display_name
            key = ConversationKey.user(user.username)
            if key in self.conversations:
                self.conversations[key].title = user.username

    def set_presence(self, user: UserInfo) -> None:
        """A PresenceChanged (or a Welcome's online list): keep the display name if the
        event carries none."""
        known = self.users.get(user.username.casefold())
        if known is not None and not user.display_name and known.display_name:
            user = UserInfo(
                user.username, known.display_name, user.online, user.bot, user.presence_change_time
            )
        self.users[user.username.casefold()] = user

    def mark_online(self, online: Iterable[UserInfo]) -> None:
        """A Welcome: exactly the users in `online` are online now."""
        names = set()
        for user in online:
            names.add(user.username.casefold())
            self.set_presence(user)
        for name, user in list(self.users.items()):
            if user.online and name not in names:
                self.users[name] = UserInfo(
                    user.username, user.display_name, False, user.bot, user.presence_change_time
                )

    def online(self, username: str) -> bool:
        """Whether `username` is online as far as this client knows."""
        user = self.users.get(username.casefold())
        return user is not None and user.online

    def display_name(self, username: str) -> str:
        """The display name of `username` if known, else ""."""
        if username.casefold() == self.me.casefold():
            return self.my_display_name
        user = self.users.get(username.casefold())
        return user.display_name if user is not None else ""

    def known_names(self) -> list[str]:
        """Usernames for `@name` completion (everyone known but me), sorted."""
        names = {u.username for u in self.users.values()}
        names |= {c.title for c in self.conversations.values() if c.key.kind == "user"}
        return sorted((n for n in names if n.casefold() != self.me.casefold()), key=str.casefold)

    def group_names(self) -> list[str]:
        """Group names for `#group` completion, sorted."""
        return sorted(
            (c.title for c in self.conversations.values() if c.key.kind == "group"),
            key=str.casefold,
        )

    # --- entries

    def _insert(self, state: ConversationState, entry: Entry) -> None:
        keys = [e.sort_key() for e in state.entries]
        state.entries.insert(bisect.bisect_right(keys, entry.sort_key()), entry)
        if isinstance(entry, MessageEntry) and (
            state.last_activity is None or entry.send_time > state.last_activity
        ):
            state.last_activity = entry.send_time

    def _resort(self, state: ConversationState) -> None:
        state.entries.sort(key=lambda e: e.sort_key())

    def _find(
        self, state: ConversationState, message_id: int = 0, client_id: str = ""
    ) -> MessageEntry | None:
        for entry in reversed(state.entries):
            if not isinstance(entry, MessageEntry):
                continue
            if message_id and entry.message_id == message_id:
                return entry
            if client_id and entry.own and entry.client_id == client_id:
                return entry
        return None

    def key_of(self, message: IncomingMessage, partner: str = "") -> ConversationKey:
        """The conversation of `message`: its group, else the other user (`partner` for
        a history page of a direct conversation, else the sender)."""
        if message.group:
            return ConversationKey.group(message.group)
        if partner:
            return ConversationKey.user(partner)
        if message.sender.casefold() == self.me.casefold():
            return ConversationKey.user(message.recipient)
        return ConversationKey.user(message.sender)

    def receive(self, message: IncomingMessage) -> Arrival:
        """A message from the Chat stream. Counted unread unless its conversation is the
        active one; a message already held (same `message_id`) changes nothing."""
        key = self.key_of(message)
        title = message.group or (
            message.recipient if message.sender.casefold() == self.me.casefold() else message.sender
        )
        state = self.conversation(key, title)
        if message.sender_display_name and message.sender.casefold() != self.me.casefold():
            known = self.users.get(message.sender.casefold())
            self.users[message.sender.casefold()] = UserInfo(
                message.sender,
                message.sender_display_name,
                known.online if known else False,
                known.bot if known else False,
                known.presence_change_time if known else None,
            )
        if self._find(state, message.message_id, "") is not None:
            return Arrival(key, new=False, unread=False)
        entry = self._entry(message)
        self._insert(state, entry)
        unread = key != self.active and not entry.own
        if unread:
            state.unread += 1
            if state.first_unread is None:
                state.first_unread = entry.order
        return Arrival(key, new=True, unread=unread)

    def _entry(self, message: IncomingMessage) -> MessageEntry:
        own = message.sender.casefold() == self.me.casefold()
        state: MessageState = "received"
        if own:
            delivered = (
                message.message_id in self._delivered_ids
                or (message.client_id and message.client_id in self._delivered_cids)
            ) and not message.group
            state = "delivered" if delivered else "sent"
        return MessageEntry(
            sender=message.sender,
            sender_display_name=message.sender_display_name,
            body=message.body,
            send_time=message.send_time,
            order=next(self._counter),
            message_id=message.message_id,
            client_id=message.client_id,
            own=own,
            state=state,
        )

    def add_history(
        self,
        key: ConversationKey,
        messages: Iterable[IncomingMessage],
        next_page_token: str,
    ) -> int:
        """Merge one ListHistory page (any order) into `key`; none counts as unread.

        Returns how many entries were new. The next older page is `next_page_token`
        ("" when this page reached the oldest message).
        """
        state = self.conversation(key)
        partner = key.name if key.kind == "user" else ""
        added = 0
        for message in messages:
            if self.key_of(message, partner) != key:
                continue
            existing = self._find(state, message.message_id, message.client_id)
            if existing is not None:
                if existing.own and existing.message_id == 0:
                    existing.message_id = message.message_id
                    existing.send_time = message.send_time
                    if existing.state == "sending":
                        existing.state = "sent"
                continue
            self._insert(state, self._entry(message))
            added += 1
        self._resort(state)
        state.history_token = next_page_token
        state.loading = False
        return added

    def note(self, text: str, when: datetime, key: ConversationKey | None = None) -> None:
        """Add a client note (already safe text) to `key`, else to the active conversation,
        else to the console shown when none is open."""
        target = key if key is not None else self.active
        entry = NoteEntry(text, when, next(self._counter))
        if target is None or target not in self.conversations:
            self.console.append(entry)
            return
        self._insert(self.conversations[target], entry)

    # --- my sends

    def sending(
        self,
        key: ConversationKey | None,
        client_id: str,
        body: str,
        now: datetime,
        title: str = "",
    ) -> None:
        """I sent `body` under `client_id` to `key` (None: a random online user, placed
        once the server names them). Shown at once, marked "sending"."""
        self._pending[client_id] = key
        if key is None:
            return
        state = self.conversation(key, title)
        entry = MessageEntry(
            sender=self.me,
            sender_display_name=self.my_display_name,
            body=body,
            send_time=now,
            order=next(self._counter),
            client_id=client_id,
            own=True,
            state="sending",
        )
        self._insert(state, entry)

    def confirmed(self, event: SendConfirmed, body: str = "") -> ConversationKey | None:
        """The server stored my send: it gets its id and time ("sent"). For a random send
        the message (its `body`) appears in the conversation with `event.recipient`.
        Returns the conversation, None for an unknown client id."""
        if event.client_id not in self._pending:
            return None
        key = self._pending.pop(event.client_id)
        if key is None:
            key = ConversationKey.user(event.recipient)
            self.sending(key, event.client_id, body, event.send_time, event.recipient)
            self._pending.pop(event.client_id, None)
        state = self.conversation(key)
        if key.kind == "user" and event.recipient:
            state.title = event.recipient
        entry = self._find(state, 0, event.client_id)
        if entry is None:
            return key
        entry.message_id = event.message_id
        entry.send_time = event.send_time
        delivered = event.message_id in self._delivered_ids or event.client_id in (
            self._delivered_cids
        )
        entry.state = "delivered" if delivered and key.kind == "user" else "sent"
        self._resort(state)
        if state.last_activity is None or event.send_time > state.last_activity:
            state.last_activity = event.send_time
        return key

    def rejected(self, event: EventRejected) -> ConversationKey | None:
        """The server refused my send `event.client_id`: its entry is marked failed.
        Returns the conversation it was in (None for a random send or an unknown id)."""
        if event.client_id not in self._pending:
            return None
        key = self._pending.pop(event.client_id)
        if key is None:
            return None
        state = self.conversations.get(key)
        entry = self._find(state, 0, event.client_id) if state is not None else None
        if entry is not None:
            entry.state = "failed"
        return key

    def pending_target(self, client_id: str) -> ConversationKey | None:
        """Where my unconfirmed send `client_id` went (None: random or unknown)."""
        return self._pending.get(client_id)

    def is_pending(self, client_id: str) -> bool:
        """Whether `client_id` is one of my sends not yet confirmed or refused."""
        return client_id in self._pending

    def delivered(self, receipt: DeliveryReceipt) -> ConversationKey:
        """`receipt.recipient`'s client showed my direct messages: every message the
        (cumulative) receipt covers gets its ✓."""
        key = ConversationKey.user(receipt.recipient)
        state = self.conversations.get(key)
        for message_id, client_id in zip(receipt.message_ids, receipt.client_ids, strict=False):
            self._delivered_ids.add(message_id)
            if client_id:
                self._delivered_cids.add(client_id)
            if state is not None:
                entry = self._find(state, message_id, client_id)
                if entry is not None and entry.own:
                    entry.state = "delivered"
        return key

    # --- groups

    def group_changed(self, update: GroupUpdate) -> ConversationKey:
        """A GroupUpdate: a group I am in appears; one I left disappears."""
        key = ConversationKey.group(update.group)
        me_named = any(m.casefold() == self.me.casefold() for m in update.members)
        if update.action == "left" and me_named:
            self.remove(key)
            return key
        state = self.conversation(key, update.group)
        if update.action == "created":
            state.members = tuple(update.members)
        elif update.action == "added":
            state.members = tuple(sorted({*state.members, *update.members}, key=str.casefold))
        elif update.action == "left":
            gone = {m.casefold() for m in update.members}
            state.members = tuple(m for m in state.members if m.casefold() not in gone)
        return key

    def set_groups(self, groups: Iterable[tuple[str, tuple[str, ...]]]) -> None:
        """The groups I belong to, as (name, members) pairs (from ListGroups)."""
        for name, members in groups:
            state = self.conversation(ConversationKey.group(name), name)
            state.members = members
