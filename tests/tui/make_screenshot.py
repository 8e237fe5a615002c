"""Make docs/tui.svg: a scripted session of `hubbub tui` against a real in-process server.

Run: `.venv/bin/python -m tests.tui.make_screenshot [docs/tui.svg]`. Four accounts, a group,
a few messages from the library side; alice uses the TUI (times are the real clock, UTC).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from datetime import UTC
from pathlib import Path

from hubbub.client import Client, Conversation
from hubbub.client.tui.app import HubbubApp, TuiConfig
from hubbub.server.app import start_server
from hubbub.server.config import ServerConfig
from tests.tui.conftest import PASSWORD, chat_of, log_in, next_message, type_line, until


async def _user(address: str, name: str) -> tuple[Client, Conversation]:
    client = await Client.connect(address)
    await client.login(name, PASSWORD)
    conversation = Conversation(client, password=PASSWORD)
    await conversation.start()
    return client, conversation


async def make(target: Path) -> None:
    """Run the scripted session and save the screenshot to `target`."""
    with tempfile.TemporaryDirectory() as tmp:
        config = ServerConfig(host="127.0.0.1", port=0, database=f"{tmp}/hubbub.db", grace_s=0.5)
        server = await start_server(config)
        address = f"127.0.0.1:{server.port}"
        try:
            async with await Client.connect(address) as setup:
                for name, display in (
                    ("alice", "Alice Liddell"), ("bob", "Bob"), ("carol", "Carol"), ("dave", ""),
                ):  # fmt: skip
                    await setup.register(name, PASSWORD, display)
            users = {name: await _user(address, name) for name in ("bob", "carol", "dave")}
            _, bob = users["bob"]
            _, carol = users["carol"]
            _, dave = users["dave"]
            await users["carol"][0].create_group("team", ["alice", "bob", "dave"])

            async def connect() -> Client:
                return await Client.connect(address)

            app = HubbubApp(TuiConfig(address, connect, session_file=Path(tmp) / "s.json", tz=UTC))
            async with app.run_test(size=(100, 26)) as pilot:
                chat = await log_in(pilot, "alice")
                bob.send("alice", "are you coming to the review?")
                await until(pilot, lambda: chat.state.total_unread() == 1)
                await pilot.click("#sidebar", offset=(4, 1))  # bob's row, the newest
                await until(pilot, lambda: "review" in "".join(chat.pane.plain_lines()))
                await type_line(pilot, "@bob yes, at ten — bringing the slides")
                await next_message(bob)
                bob.send("alice", "great. the room changed:\nit is B-204 now")
                await until(pilot, lambda: "B-204" in "".join(chat.pane.plain_lines()))
                await type_line(pilot, "thanks!")
                await next_message(bob)
                await asyncio.sleep(0.5)
                carol.send("", "deploy is at noon", group="team")
                dave.send("", "build is green ✓", group="team")
                dave.send("alice", "lunch later?")
                await until(pilot, lambda: chat_of(app).state.total_unread() >= 3)
                await pilot.pause(0.5)
                app.save_screenshot(filename=target.name, path=str(target.parent))
                await app.action_quit()
            for client, conversation in users.values():
                await conversation.close()
                await client.close()
        finally:
            await server.stop(grace_s=0.5)


if __name__ == "__main__":
    asyncio.run(make(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/tui.svg").resolve()))
