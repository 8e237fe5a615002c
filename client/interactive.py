"""The interactive chat (`hubbub` / `hubbub chat`): login dialogue, then a live chat.

Input comes from a prompt_toolkit `PromptSession` (history, completion of
`@names` and `!commands`) inside `patch_stdout`, so lines printed by the event
task appear above the line being typed without mangling it. When stdin is not a
terminal a plain line reader is used instead (scripts can pipe lines in); both are
in :mod:`hubbub.client.line_input`. Typed lines are classified by
:mod:`hubbub.client.parsing`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import sys
from dataclasses import dataclass
from typing import Any

from prompt_toolkit.patch_stdout import patch_stdout

from . import parsing, render
from .client import Client
from .conversation import Conversation
from .errors import ErrorKind, HubbubError
from .events import (
    ConnectionLost,
    DeliveryReceipt,
    EventRejected,
    GroupUpdate,
    IncomingMessage,
    PresenceChanged,
    Reconnected,
    SendConfirmed,
)
from .line_input import CHAT_PROMPT, LineInput, PlainInput, PromptInput
from .target import ServerTarget

LOGIN_PROMPT = "> "
KEEP_TYPED_PASSWORD = "Press Enter to keep the password you just typed."


# --- the chat application -----------------------------------------------------------------


class _Outcome(enum.Enum):
    RETRY = "retry"
    QUIT = "quit"
    FULL = "full"


class _Quit(Exception):
    """The person typed !quit or Ctrl-D at a prompt."""


def _say(line: str) -> None:
    print(line, flush=True)


@dataclass(frozen=True)
class _Sent:
    """What an unconfirmed group or random send was addressed to (for its answer line)."""

    group: str = ""
    random_recipient: bool = False


class ChatApp:
    """The interactive dialogue on top of a connected `Client`.

    `run()` returns the process exit status: 0 after !quit / Ctrl-D, 1 when the
    server is full or the chat cannot go on.
    """

    def __init__(self, client: Client, line_input: LineInput | None = None) -> None:
        self.client = client
        self.names: set[str] = set()
        self.groups: set[str] = set()
        self.me = ""
        self.input: LineInput = line_input or PromptInput(lambda: self.names, lambda: self.groups)
        self._sent: dict[str, _Sent] = {}

    async def _ask(self, prompt: str, *, secret: bool = False, chat: bool = False) -> str:
        try:
            line = await self.input.ask(prompt, secret=secret, chat=chat)
        except EOFError:
            raise _Quit from None
        if line.strip() == "!quit":
            raise _Quit
        return line

    async def run(self) -> int:
        """Log in (asking again after every failure), then chat until !quit."""
        _say(render.WELCOME)
        conversation: Conversation | None = None
        while conversation is None:
            try:
                result = await self._login_once()
            except _Quit:
                return 0
            if result is _Outcome.FULL:
                _say(render.SERVER_FULL)
                return 1
            if isinstance(result, Conversation):
                conversation = result
            else:
                _say(render.ENTER_LOGIN)
        return await self._chat(conversation)

    # --- login dialogue

    async def _login_once(self) -> _Outcome | Conversation:
        name = (await self._ask(LOGIN_PROMPT)).strip()
        if not name:
            return _Outcome.RETRY
        if not render.valid_username(name):
            _say(render.name_disallowed(name))
            return _Outcome.RETRY
        password = await self._ask("Password: ", secret=True)
        try:
            await self.client.login(name, password)
        except HubbubError as exc:
            if exc.kind is ErrorKind.UNAUTHENTICATED:
                return await self._offer_register(name, password)
            self._login_failed(name, exc)
            return _Outcome.RETRY
        return await self._open(name, password)

    def _login_failed(self, name: str, exc: HubbubError) -> None:
        if exc.kind is ErrorKind.INVALID_ARGUMENT and (
            not exc.field_violations or any("username" in f for f in exc.fields())
        ):
            _say(render.name_disallowed(name))
        elif exc.kind is ErrorKind.ALREADY_EXISTS:
            _say(render.name_in_use(name))
        elif exc.kind is ErrorKind.UNAVAILABLE:
            _say(render.shown(exc.message))
        else:
            _say(f"Cannot log in as {render.shown(name)}. {render.shown(exc.message)}")

    async def _offer_register(self, name: str, typed: str) -> _Outcome | Conversation:
        """Create the account `name`; `typed` is the password given at the login prompt,
        kept when the person just presses Enter at "Choose a password:"."""
        answer = await self._ask(f"Create a new account '{name}'? [y/N] ")
        if answer.strip().lower() not in {"y", "yes"}:
            return _Outcome.RETRY
        _say(KEEP_TYPED_PASSWORD)
        password = await self._ask("Choose a password: ", secret=True) or typed
        again = await self._ask("Repeat the password: ", secret=True)
        if password != again:
            _say("The passwords do not match.")
            return _Outcome.RETRY
        display_name = (await self._ask("Display name (optional): ")).strip()
        try:
            await self.client.register(name, password, display_name)
            await self.client.login(name, password)
        except HubbubError as exc:
            fields = exc.fields()
            if (
                exc.kind is ErrorKind.INVALID_ARGUMENT
                and fields
                and not any("username" in f for f in fields)
            ):
                detail = "; ".join(v.description for v in exc.field_violations) or exc.message
                _say(f"Cannot create account {name}. {render.shown(detail)}")
            else:
                self._login_failed(name, exc)
            return _Outcome.RETRY
        return await self._open(name, password)

    async def _open(self, name: str, password: str) -> _Outcome | Conversation:
        conversation = Conversation(self.client, password=password)
        try:
            welcome = await conversation.start()
        except HubbubError as exc:
            await self._logout_quietly()
            if exc.kind is ErrorKind.RESOURCE_EXHAUSTED:
                return _Outcome.FULL
            if exc.kind is ErrorKind.ALREADY_EXISTS:
                _say(render.name_in_use(name))
            else:
                self._login_failed(name, exc)
            return _Outcome.RETRY
        self.me = welcome.user.username or name
        self.names = {u.username for u in welcome.online_users if u.username != self.me}
        _say(render.logged_in(name))
        return conversation

    async def _logout_quietly(self) -> None:
        with contextlib.suppress(HubbubError, TimeoutError):
            await asyncio.wait_for(self.client.logout(), 3)

    # --- chatting

    async def _chat(self, conversation: Conversation) -> int:
        events = asyncio.create_task(self._show_events(conversation))
        learn = asyncio.create_task(self._learn_groups())
        status = 0
        try:
            while True:
                prompt = asyncio.create_task(self._ask(CHAT_PROMPT, chat=True))
                await asyncio.wait({prompt, events}, return_when=asyncio.FIRST_COMPLETED)
                if not prompt.done():
                    # The event task ended: the chat cannot go on.
                    prompt.cancel()
                    with contextlib.suppress(asyncio.CancelledError, _Quit, KeyboardInterrupt):
                        await prompt
                    status = 1
                    break
                try:
                    line = prompt.result()
                    await self._handle_line(conversation, line)
                except (_Quit, KeyboardInterrupt):
                    break
        finally:
            learn.cancel()
            events.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await learn
            with contextlib.suppress(asyncio.CancelledError):
                await events
            with contextlib.suppress(HubbubError):
                await conversation.close()
            await self._logout_quietly()
        return status

    async def _learn_groups(self) -> None:
        """Fetch my groups once for `#group` completion; failures are not worth a line."""
        with contextlib.suppress(HubbubError):
            self.groups |= {g.name for g in await self.client.list_groups()}

    async def _handle_line(self, conversation: Conversation, line: str) -> None:
        parsed = parsing.parse_line(line)
        if isinstance(parsed, parsing.DirectMessage):
            conversation.send(parsed.recipient, parsed.body)
        elif isinstance(parsed, parsing.GroupMessage):
            cid = conversation.send("", parsed.body, group=parsed.group)
            self._sent[cid] = _Sent(group=parsed.group)
        elif isinstance(parsed, parsing.RandomMessage):
            cid = conversation.send_random(parsed.body)
            self._sent[cid] = _Sent(random_recipient=True)
        elif isinstance(parsed, parsing.Command):
            await self._command(conversation, parsed.name)
        elif isinstance(parsed, parsing.CreateGroup):
            await self._create_group(parsed)
        elif isinstance(parsed, parsing.AddMembers):
            await self._add_members(parsed)
        elif isinstance(parsed, parsing.LeaveGroup):
            await self._leave_group(parsed.group)
        elif isinstance(parsed, parsing.ShowHistory):
            await self._history(parsed)
        elif isinstance(parsed, parsing.SetDisplayName):
            await self._set_display_name(parsed.display_name)
        elif isinstance(parsed, parsing.Invalid):
            _say(parsed.message)

    async def _command(self, conversation: Conversation, name: str) -> None:
        if name == "!who":
            await self._who()
        elif name == "!groups":
            await self._groups()
        elif name == "!password":
            await self._change_password(conversation)
        elif name == "!help":
            for text in render.help_lines():
                _say(text)

    @staticmethod
    def _failed(what: str, exc: HubbubError) -> None:
        if exc.kind is ErrorKind.UNAVAILABLE:
            _say(render.SERVER_UNREACHABLE)
        else:
            _say(f"* Cannot {what}: {render.shown(exc.detail())}")

    @staticmethod
    def _group_failed(group: str, exc: HubbubError) -> None:
        if exc.kind is ErrorKind.UNAVAILABLE:
            _say(render.SERVER_UNREACHABLE)
        else:
            _say(render.group_error_line(exc.reason, exc.kind.value, group, exc.detail()))

    async def _who(self) -> None:
        try:
            users = await self.client.list_users(online_only=True)
        except HubbubError as exc:
            self._failed("list the users", exc)
            return
        _say(render.who_header(len(users)))
        for user in users:
            _say(render.user_label(user.username, user.display_name))
        self.names |= {u.username for u in users if u.username != self.me}

    async def _groups(self) -> None:
        try:
            groups = await self.client.list_groups()
        except HubbubError as exc:
            self._failed("list your groups", exc)
            return
        _say(render.groups_header(len(groups)))
        for group in groups:
            _say(render.group_listing(group.name, group.members))
        self.groups = {g.name for g in groups}

    async def _create_group(self, request: parsing.CreateGroup) -> None:
        try:
            group = await self.client.create_group(request.group, request.members)
        except HubbubError as exc:
            self._group_failed(request.group, exc)
            return
        self.groups.add(group.name)
        _say(render.group_created(group.name, group.members))

    async def _add_members(self, request: parsing.AddMembers) -> None:
        try:
            group = await self.client.add_group_members(request.group, request.members)
        except HubbubError as exc:
            self._group_failed(request.group, exc)
            return
        _say(
            render.members_added(
                group.name, render.canonical_members(request.members, group.members)
            )
        )

    async def _leave_group(self, name: str) -> None:
        try:
            await self.client.leave_group(name)
        except HubbubError as exc:
            self._group_failed(name, exc)
            return
        self.groups = {g for g in self.groups if g.casefold() != name.casefold()}
        _say(render.group_left(name))

    async def _history(self, request: parsing.ShowHistory) -> None:
        try:
            messages = await self.client.recent_history(
                username=request.username or None,
                group=request.group or None,
                count=request.count,
            )
        except HubbubError as exc:
            if request.group:
                self._group_failed(request.group, exc)
            elif exc.kind is ErrorKind.NOT_FOUND:
                _say(render.user_not_found(request.username))
            else:
                self._failed("show the history", exc)
            return
        _say(render.history_header(request.username, request.group))
        for message in messages:
            _say(render.history_line(message.sender, message.body, message.send_time))
        if not messages:
            _say(render.NO_MESSAGES)

    async def _set_display_name(self, display_name: str) -> None:
        try:
            user = await self.client.update_profile(display_name=display_name)
        except HubbubError as exc:
            self._failed("change the display name", exc)
            return
        _say(render.display_name_changed(user.display_name or display_name))

    async def _change_password(self, conversation: Conversation) -> None:
        try:
            current = await self._ask("Current password: ", secret=True)
            new = await self._ask("New password: ", secret=True)
            again = await self._ask("Repeat the new password: ", secret=True)
        except KeyboardInterrupt:  # Ctrl-C abandons the change, not the chat
            _say("The password was not changed.")
            return
        if new != again:
            _say(render.PASSWORDS_DIFFER)
            return
        if not new:
            _say("The new password is empty; the password was not changed.")
            return
        try:
            await self.client.update_profile(new_password=new, current_password=current)
        except HubbubError as exc:
            if exc.kind is ErrorKind.UNAUTHENTICATED:
                _say(render.shown(exc.message))
            else:
                self._failed("change the password", exc)
            return
        conversation.password = new  # for logging in again after a reconnect
        _say(render.PASSWORD_CHANGED)

    def _group_update(self, event: GroupUpdate) -> None:
        if event.actor != self.me:  # one's own action was already confirmed by its command
            _say(render.group_update_line(event.group, event.action, event.actor, event.members))
        if event.action in ("created", "added") and self.me in event.members:
            self.groups.add(event.group)
        elif event.action == "left" and self.me in event.members:
            self.groups.discard(event.group)
        self.names |= {m for m in (event.actor, *event.members) if m != self.me}

    async def _show_events(self, conversation: Conversation) -> None:
        try:
            async for event in conversation:
                if isinstance(event, IncomingMessage):
                    _say(
                        render.incoming_line(
                            event.sender, event.body, event.send_time, group=event.group
                        )
                    )
                    conversation.ack(event.sequence)
                    if event.sender != self.me:
                        self.names.add(event.sender)
                    if event.group:
                        self.groups.add(event.group)
                elif isinstance(event, DeliveryReceipt):
                    _say(render.delivered_line(event.recipient))
                    conversation.ack(event.sequence)
                elif isinstance(event, GroupUpdate):
                    self._group_update(event)
                    conversation.ack(event.sequence)
                elif isinstance(event, SendConfirmed):
                    sent = self._sent.pop(event.client_id, _Sent())
                    if sent.random_recipient:
                        _say(render.message_sent_to(event.recipient))
                    else:
                        _say(render.MESSAGE_SENT)
                elif isinstance(event, EventRejected):
                    sent = self._sent.pop(event.client_id, _Sent())
                    _say(rejection_line(event, group=sent.group))
                elif isinstance(event, PresenceChanged):
                    if event.user.username != self.me:
                        _say(
                            render.presence_line(
                                event.user.username, event.user.online, event.user.display_name
                            )
                        )
                        if event.user.online:
                            self.names.add(event.user.username)
                elif isinstance(event, ConnectionLost):
                    _say(render.CONNECTION_LOST)
                elif isinstance(event, Reconnected):
                    _say(render.RECONNECTED)
                    self.names |= {
                        u.username for u in event.welcome.online_users if u.username != self.me
                    }
        except HubbubError as exc:
            _say(f"* Cannot reconnect: {render.shown(exc.message)}")


def rejection_line(event: EventRejected, group: str = "") -> str:
    """The line for a refused send: unknown recipient or group, not a member, nobody
    online for a random send, bad body, or anything else. `group` is the group the
    refused message was addressed to, if any."""
    return render.rejection_text(event.reason, event.kind.value, event.fields(), group)


def _quiet_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Stray background errors must not be printed over the chat (HUBBUB_DEBUG shows them)."""
    if os.environ.get("HUBBUB_DEBUG"):
        loop.default_exception_handler(context)


async def run_interactive(target: str | ServerTarget) -> int:
    """Run the interactive client against `target` (see `Client`); returns the exit status."""
    asyncio.get_running_loop().set_exception_handler(_quiet_exception_handler)
    try:
        client = await Client.connect(target)
    except HubbubError as exc:
        print(render.shown(exc.message), file=sys.stderr, flush=True)
        return 1
    async with client:
        if sys.stdin.isatty() and sys.stdout.isatty():
            with patch_stdout():
                return await ChatApp(client).run()
        return await ChatApp(client, PlainInput()).run()
