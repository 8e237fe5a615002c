"""Pilot tests of `hubbub tui` (HubbubApp.run_test) against the real server in-process."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from textual.widgets import Input

from hubbub.client import Client
from hubbub.client.session_store import load_session
from hubbub.client.tui.app import HubbubApp
from hubbub.client.tui.chat_screen import ChatScreen
from hubbub.client.tui.conversations import ConversationKey
from hubbub.server.app import start_server
from hubbub.server.config import ServerConfig
from tests.integration.conftest import Node

from .conftest import (
    PASSWORD,
    SIZE,
    chat_of,
    chat_ready,
    library_user,
    log_in,
    next_message,
    quit_app,
    register,
    screen_text,
    type_line,
    until,
)

pytestmark = pytest.mark.timeout(60)


async def test_two_users_chat_both_ways(node: Node, app_factory: Callable[..., HubbubApp]) -> None:
    """alice in the TUI and bob through the library exchange messages; bob's ack puts a ✓
    on alice's message, and each message appears once."""
    await register(node.address, "alice", "bob")
    bob_client, bob = await library_user(node.address, "bob")
    app = app_factory(node.address)
    async with app.run_test(size=SIZE) as pilot:
        chat = await log_in(pilot, "alice")
        await type_line(pilot, "@bob hello bob")
        got = await next_message(bob)
        assert (got.sender, got.body) == ("alice", "hello bob")
        bob.send("alice", "hi alice")
        await until(pilot, lambda: any("bob: hi alice" in line for line in chat.pane.plain_lines()))
        await until(
            pilot, lambda: any("alice: hello bob ✓" in line for line in chat.pane.plain_lines())
        )
        lines = chat.pane.plain_lines()
        assert sum("hi alice" in line for line in lines) == 1
        assert sum("hello bob" in line for line in lines) == 1
        assert chat.state.active == ConversationKey.user("bob")
        await quit_app(app)
    await bob.close()
    await bob_client.close()


async def test_switching_conversations_and_unread_counts(
    node: Node, app_factory: Callable[..., HubbubApp]
) -> None:
    """Messages to a conversation that is not open count as unread in the sidebar and
    raise a notice in the status bar; ctrl+n opens it (count cleared, marker shown) and a
    click on the sidebar switches back."""
    await register(node.address, "alice", "bob", "carol")
    bob_client, bob = await library_user(node.address, "bob")
    carol_client, carol = await library_user(node.address, "carol")
    app = app_factory(node.address)
    async with app.run_test(size=SIZE) as pilot:
        chat = await log_in(pilot, "alice")
        await type_line(pilot, "@bob hi bob")
        await next_message(bob)
        carol.send("alice", "one from carol")
        carol.send("alice", "two from carol")
        carol_key = ConversationKey.user("carol")
        await until(
            pilot,
            lambda: (
                carol_key in chat.state.conversations
                and chat.state.conversations[carol_key].unread == 2
            ),
        )
        screen = screen_text(app)
        assert "carol (2)" in screen
        assert "new message from carol" in screen
        assert chat.state.active == ConversationKey.user("bob")
        # carol's conversation is the most recent, so it comes first in the sidebar
        assert [c.title for c in chat.state.ordered()][:2] == ["carol", "bob"]
        await pilot.press("ctrl+p")
        assert chat.state.active == carol_key
        assert chat.state.conversations[carol_key].unread == 0
        lines = chat.pane.plain_lines()
        marker = next(i for i, line in enumerate(lines) if "new messages" in line)
        assert "one from carol" in lines[marker + 1]
        assert "new message from carol" not in screen_text(app)
        # the mouse: bob is the second row of the sidebar
        await pilot.click("#sidebar", offset=(4, 2))
        await until(pilot, lambda: chat.state.active == ConversationKey.user("bob"))
        await pilot.press("alt+down")
        assert chat.state.active == carol_key
        await quit_app(app)
    for conversation, client in ((bob, bob_client), (carol, carol_client)):
        await conversation.close()
        await client.close()


async def test_scrolling_up_loads_older_history(
    node: Node, app_factory: Callable[..., HubbubApp]
) -> None:
    """A conversation with 130 stored messages opens with the newest page; scrolling to the
    top loads older pages from ListHistory until the first message, each message once."""
    await register(node.address, "alice", "bob")
    bob_client, bob = await library_user(node.address, "bob")
    for i in range(130):
        bob.send("alice", f"old message {i:03d}")
    alice_client, alice = await library_user(node.address, "alice")
    for _ in range(130):
        await next_message(alice)
    await alice.close()
    await alice_client.close()
    app = app_factory(node.address)
    async with app.run_test(size=SIZE) as pilot:
        chat = await log_in(pilot, "alice")
        key = ConversationKey.user("bob")
        await until(pilot, lambda: chat.state.active == key)
        await until(pilot, lambda: len(chat.state.conversations[key].messages()) >= 20)
        assert "old message 129" in screen_text(app)
        assert not chat.state.conversations[key].history_complete
        for _ in range(20):
            if chat.state.conversations[key].history_complete:
                break
            await pilot.press("pageup", "pageup", "pageup")
            chat.pane.scroll_home(animate=False, immediate=True)
            await pilot.pause(0.2)
        await until(pilot, lambda: chat.state.conversations[key].history_complete)
        bodies = [m.body for m in chat.state.conversations[key].messages()]
        assert bodies == [f"old message {i:03d}" for i in range(130)]
        lines = chat.pane.plain_lines()
        assert "beginning of bob" in lines[0]
        assert sum("old message 000" in line for line in lines) == 1
        await quit_app(app)
    await bob.close()
    await bob_client.close()


async def test_malicious_body_cannot_forge_a_line(
    node: Node, app_factory: Callable[..., HubbubApp]
) -> None:
    """A body with newlines, escape sequences, line separators and bidi overrides shows as
    one message: only its first row carries a time, no control character reaches the screen;
    a display name with markup and a line separator is shown literally after the username."""
    name = "[b red]alice[/]\u2028 12:00 carol: hi"
    await register(node.address, "alice", "bob", display_names={"bob": name})
    bob_client, bob = await library_user(node.address, "bob")
    app = app_factory(node.address)
    evil = (
        "hi\n12:00 alice: I owe bob 100€\x1b[2J\x1b]0;pwned\x07"
        "\u2028"
        + "12:01 carol: second forgery\u202etxet\r12:02 dave: third"
        + " x" * 40
        + " 12:03 eve: at the wrap point"
    )
    async with app.run_test(size=SIZE) as pilot:
        chat = await log_in(pilot, "alice")
        await type_line(pilot, "@bob ready")
        await next_message(bob)
        bob.send("alice", evil)
        await until(pilot, lambda: any("I owe bob" in line for line in chat.pane.plain_lines()))
        lines = chat.pane.plain_lines()
        timed = [line for line in lines if re.match(r"\d\d:\d\d ", line)]
        assert len(timed) == 2, lines
        assert timed[0].split(" ", 1)[1].startswith("alice: ready")
        assert (
            timed[1]
            .split(" ", 1)[1]
            .startswith("bob ([b red]alice[/]<U+2028> 12:00 carol: hi): hi")
        )
        screen = screen_text(app)
        assert "\x1b" not in screen and "\x07" not in screen and "\u202e" not in screen
        assert "^[[2J" in screen and "<U+2028>" in screen and "<U+202E>" in screen
        assert "^M" in screen and "\r" not in screen
        await quit_app(app)
    await bob.close()
    await bob_client.close()


async def test_reconnects_after_the_server_restarts(
    db_path: Path, app_factory: Callable[..., HubbubApp]
) -> None:
    """The server stops and starts again on the same port and database: the status bar
    says reconnecting, a message typed meanwhile is delivered once after the reconnect,
    and messages sent after the restart arrive once."""
    config = ServerConfig(host="127.0.0.1", port=0, database=str(db_path), grace_s=0.5)
    server = await start_server(config)
    address = f"127.0.0.1:{server.port}"
    bob_client: Client | None = None
    try:
        await register(address, "alice", "bob")
        bob_client, bob = await library_user(address, "bob")
        app = app_factory(address)
        async with app.run_test(size=SIZE) as pilot:
            chat = await log_in(pilot, "alice")
            await type_line(pilot, "@bob before the restart")
            assert (await next_message(bob)).body == "before the restart"
            await server.stop(grace_s=0.5)
            await until(pilot, lambda: "reconnecting (next try in" in screen_text(app))
            await type_line(pilot, "typed while the server was down")
            server = await start_server(replace(config, port=int(address.rsplit(":", 1)[1])))
            await until(pilot, lambda: "● connected" in screen_text(app), within=30)
            got = await next_message(bob, within=30)
            assert got.body == "typed while the server was down"
            bob.send("alice", "after the restart")
            await until(
                pilot, lambda: any("after the restart" in x for x in chat.pane.plain_lines())
            )
            await pilot.pause(0.5)
            lines = chat.pane.plain_lines()
            assert sum("after the restart" in x for x in lines) == 1
            assert sum("typed while the server was down" in x for x in lines) == 1
            assert sum("before the restart" in x for x in lines) == 1
            await quit_app(app)
        await bob.close()
    finally:
        if bob_client is not None:
            await bob_client.close()
        await server.stop(grace_s=0.5)


async def test_account_creation_then_the_saved_session_is_reused(
    node: Node, app_factory: Callable[..., HubbubApp]
) -> None:
    """Creating an account on the account screen opens the chat; the next start with the
    same session file goes straight to the chat without asking."""
    first = app_factory(node.address, name="shared")
    async with first.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: first.screen.query("#register"))
        await pilot.click("#register")
        await until(pilot, lambda: first.screen.query("#repeat"))
        for field, value in (
            ("#username", "newbie"),
            ("#password", "a long password"),
            ("#repeat", "a long password"),
            ("#display", "New Bie"),
        ):
            first.screen.query_one(field, Input).value = value
        await pilot.click("#create")
        await until(pilot, lambda: chat_ready(first))
        assert chat_of(first).state.my_display_name == "New Bie"
        await quit_app(first)
    second = app_factory(node.address, name="shared")
    async with second.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: chat_ready(second))
        assert chat_of(second).state.me == "newbie"
        await until(pilot, lambda: "newbie" in screen_text(second))
        await quit_app(second)


async def test_wrong_password_stays_on_the_login_screen(
    node: Node, app_factory: Callable[..., HubbubApp]
) -> None:
    """A wrong password shows one error line and the login screen stays."""
    await register(node.address, "alice")
    app = app_factory(node.address)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.screen.query("#username"))
        await pilot.click("#username")
        await pilot.press(*"alice")
        await pilot.click("#password")
        await pilot.press(*"wrong password", "enter")
        await until(pilot, lambda: "Wrong username or password" in screen_text(app))
        assert not isinstance(app.screen, ChatScreen)
        await app.action_quit()


async def test_group_commands_and_the_command_palette(
    node: Node, app_factory: Callable[..., HubbubApp]
) -> None:
    """!create makes a group and opens it, a plain line goes to the open group, a member's
    reply arrives there; the command palette runs !who; Tab completes @names."""
    await register(node.address, "alice", "bob")
    bob_client, bob = await library_user(node.address, "bob")
    app = app_factory(node.address)
    async with app.run_test(size=SIZE) as pilot:
        chat = await log_in(pilot, "alice")
        await type_line(pilot, "!create team bob")
        team = ConversationKey.group("team")
        await until(pilot, lambda: chat.state.active == team)
        assert "Group #team created with alice, bob." in screen_text(app)
        await type_line(pilot, "hello team")
        got = await next_message(bob)
        assert (got.group, got.body) == ("team", "hello team")
        bob.send("", "hi from bob", group="team")
        await until(pilot, lambda: any("bob: hi from bob" in x for x in chat.pane.plain_lines()))
        await pilot.press("ctrl+k")
        await pilot.press(*"!who")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await until(pilot, lambda: "online users:" in screen_text(app))
        chat.input.focus()
        chat.input.value = ""
        await pilot.press(*"@bo")
        await until(pilot, lambda: chat.input._suggestion == "@bob ")
        await pilot.press("tab")
        assert chat.input.value == "@bob "
        await quit_app(app)
    await bob.close()
    await bob_client.close()


async def test_profile_group_and_random_commands(
    node: Node, app_factory: Callable[..., HubbubApp]
) -> None:
    """!name, !add, !leave, !random and !password (its dialog) answer with the line-mode
    wording; the group left disappears from the sidebar; a new password is used at once."""
    await register(node.address, "alice", "bob", "carol")
    bob_client, bob = await library_user(node.address, "bob")
    app = app_factory(node.address)
    async with app.run_test(size=SIZE) as pilot:
        chat = await log_in(pilot, "alice")
        await type_line(pilot, "!name Alice Liddell")
        await until(pilot, lambda: "Your display name is now Alice Liddell." in screen_text(app))
        await type_line(pilot, "!create team")
        team = ConversationKey.group("team")
        await until(pilot, lambda: chat.state.active == team)
        await type_line(pilot, "!add team bob carol")
        await until(pilot, lambda: "Added bob, carol to #team." in screen_text(app))
        await type_line(pilot, "!random anyone there?")
        got = await next_message(bob)
        assert got.body == "anyone there?"
        await until(pilot, lambda: "The message was sent to bob" in screen_text(app))
        bob_key = ConversationKey.user("bob")
        assert [m.body for m in chat.state.conversations[bob_key].messages()] == ["anyone there?"]
        await type_line(pilot, "!leave team")
        await until(pilot, lambda: team not in chat.state.conversations)
        assert "# team" not in screen_text(app)
        await type_line(pilot, "!password")
        await until(pilot, lambda: app.screen.query("#current"))
        for field, value in (
            ("#current", PASSWORD), ("#new", "another long password"),
            ("#repeat", "another long password"),
        ):  # fmt: skip
            app.screen.query_one(field, Input).value = value
        await pilot.click("#change")
        await until(pilot, lambda: "Password changed" in screen_text(app))
        async with await Client.connect(node.address) as check:
            await check.login("alice", "another long password")
        await type_line(pilot, "!history @ghost")
        await until(pilot, lambda: "The user 'ghost' does not exist." in screen_text(app))
        assert ConversationKey.user("ghost") not in chat.state.conversations
        await type_line(pilot, "!bogus")
        await until(pilot, lambda: "Unknown command !bogus" in screen_text(app))
        await quit_app(app)
    await bob.close()
    await bob_client.close()


async def test_loading_older_history_keeps_the_view(
    node: Node, app_factory: Callable[..., HubbubApp]
) -> None:
    """Reaching the top loads ONE older page, and the message that was at the top stays
    where it was (the view does not jump to the oldest message)."""
    await register(node.address, "alice", "bob")
    bob_client, bob = await library_user(node.address, "bob")
    for i in range(200):
        bob.send("alice", f"old message {i:03d}")
    alice_client, alice = await library_user(node.address, "alice")
    for _ in range(200):
        await next_message(alice)
    await alice.close()
    await alice_client.close()
    app = app_factory(node.address)
    async with app.run_test(size=SIZE) as pilot:
        chat = await log_in(pilot, "alice")
        key = ConversationKey.user("bob")
        await until(pilot, lambda: chat.state.active == key)
        conversation = chat.state.conversations[key]
        await until(pilot, lambda: len(conversation.messages()) > 1 and not conversation.loading)
        before = len(conversation.messages())
        oldest = conversation.messages()[0].body
        chat.pane.scroll_home(animate=False, immediate=True)
        await until(pilot, lambda: len(conversation.messages()) > before)
        await until(pilot, lambda: not conversation.loading)
        await pilot.pause(0.5)
        assert len(conversation.messages()) == before + 50
        lines = chat.pane.plain_lines()
        top = lines[round(chat.pane.scroll_y) :]
        assert any(oldest in line for line in top[:3]), top[:3]
        await quit_app(app)
    await bob.close()
    await bob_client.close()


async def test_revoked_saved_session_asks_to_log_in(
    node: Node, app_factory: Callable[..., HubbubApp], tmp_path: Path
) -> None:
    """A saved login the server no longer accepts leads to the login screen with a line
    saying so, not to an error."""
    await register(node.address, "alice")
    first = app_factory(node.address, name="kept")
    async with first.run_test(size=SIZE) as pilot:
        await log_in(pilot, "alice")
        await quit_app(first)
    saved = load_session(tmp_path / "kept.json")
    assert saved is not None and saved.username == "alice"
    async with await Client.connect(node.address, token=saved.token) as revoker:
        await revoker.logout()
    second = app_factory(node.address, name="kept")
    async with second.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "no longer valid" in screen_text(second))
        assert not isinstance(second.screen, ChatScreen)
        await second.action_quit()


async def test_session_ended_while_chatting_returns_to_login(
    db_path: Path, app_factory: Callable[..., HubbubApp], tmp_path: Path
) -> None:
    """Resumed from a saved login (no password in memory), the chat cannot log in again
    when the server refuses the token after a reconnect: the login screen comes back."""
    config = ServerConfig(host="127.0.0.1", port=0, database=str(db_path), grace_s=0.5)
    server = await start_server(config)
    address = f"127.0.0.1:{server.port}"
    try:
        await register(address, "alice")
        first = app_factory(address, name="kept")
        async with first.run_test(size=SIZE) as pilot:
            await log_in(pilot, "alice")
            await quit_app(first)
        app = app_factory(address, name="kept")
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: chat_ready(app))
            saved = load_session(tmp_path / "kept.json")
            assert saved is not None
            async with await Client.connect(address, token=saved.token) as revoker:
                await revoker.logout()
            await server.stop(grace_s=0.5)
            server = await start_server(replace(config, port=int(address.rsplit(":", 1)[1])))
            await until(pilot, lambda: "The session ended" in screen_text(app), within=30)
            assert app.screen.query("#username")
            await app.action_quit()
    finally:
        await server.stop(grace_s=0.5)
