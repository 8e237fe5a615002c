"""In-process Hubbub server on port 0 with a temp database, and a stub-level chat helper."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from hubbub.server.app import HubbubServer, start_server
from hubbub.server.config import ServerConfig
from hubbub.v1 import messenger_pb2 as pb
from hubbub.v1 import messenger_pb2_grpc as pb_grpc

PASSWORD = "correct horse battery"


@dataclass
class Node:
    """A running in-process server plus a channel to it."""

    server: HubbubServer
    channel: grpc.aio.Channel
    stub: pb_grpc.MessengerServiceAsyncStub
    config: ServerConfig

    @property
    def address(self) -> str:
        """host:port of the server."""
        return f"127.0.0.1:{self.server.port}"


async def open_node(config: ServerConfig) -> Node:
    """Start a server with ``config`` and connect a channel."""
    server = await start_server(config)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    return Node(server, channel, pb_grpc.MessengerServiceStub(channel), config)


async def close_node(node: Node) -> None:
    """Close the channel and stop the server."""
    await node.channel.close(None)
    await node.server.stop(grace_s=1.0)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A temp SQLite path."""
    return tmp_path / "hubbub.db"


@pytest.fixture
async def node_factory(db_path: Path) -> AsyncIterator[Callable[..., Awaitable[Node]]]:
    """Start in-process servers (``**overrides`` of ServerConfig); stopped at teardown."""
    nodes: list[Node] = []

    async def make(**overrides: Any) -> Node:
        # Many tests register more accounts from 127.0.0.1 than the production per-address
        # Register limit allows; tests of that limit (tests/security) set their own.
        settings: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "database": str(db_path),
            "grace_s": 1.0,
            "register_limit": "100000 per hour",
        }
        config = ServerConfig(**{**settings, **overrides})
        node = await open_node(config)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        await close_node(node)


@pytest.fixture
async def node(node_factory: Callable[..., Awaitable[Node]]) -> Node:
    """One in-process server with default settings."""
    return await node_factory()


def auth(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata for a session token."""
    return (("authorization", f"Bearer {token}"),)


async def register_login(node: Node, username: str, display_name: str = "") -> str:
    """Register ``username`` and return a session token."""
    await node.stub.Register(
        pb.RegisterRequest(username=username, password=PASSWORD, display_name=display_name)
    )
    reply = await node.stub.Login(pb.LoginRequest(username=username, password=PASSWORD))
    return reply.token


@dataclass
class Chat:
    """A raw Chat stream: write ChatRequests, read ChatResponses with a timeout."""

    call: Any
    seen: list[pb.ChatResponse] = field(default_factory=list)

    async def send(self, recipient: str, body: str, client_id: str) -> None:
        """Write a send event."""
        await self.call.write(
            pb.ChatRequest(send=pb.SendMessage(client_id=client_id, recipient=recipient, body=body))
        )

    async def write(self, request: pb.ChatRequest) -> None:
        """Write any event."""
        await self.call.write(request)

    async def next(self, kind: str | None = None, wait_s: float = 5.0) -> pb.ChatResponse:
        """Next event (of ``kind``, skipping others), or fail after ``wait_s`` seconds."""
        while True:
            event = await asyncio.wait_for(self.call.read(), wait_s)
            assert isinstance(event, pb.ChatResponse), "stream ended"  # not grpc.aio.EOF
            self.seen.append(event)
            if kind is None or event.WhichOneof("event") == kind:
                return event

    async def messages(self, n: int, wait_s: float = 5.0) -> list[pb.Message]:
        """The next ``n`` message events."""
        return [(await self.next("message", wait_s)).message for _ in range(n)]

    async def close(self) -> None:
        """Cancel the call."""
        self.call.cancel()


async def open_chat(node: Node, token: str, after: int | None = None, resume: bool = True) -> Chat:
    """Open Chat, read Welcome, optionally Resume (after ``after``) and read Synced."""
    call = node.stub.Chat(None, metadata=auth(token))
    chat = Chat(call)
    welcome = await chat.next()
    assert welcome.WhichOneof("event") == "welcome"
    if resume:
        r = pb.Resume() if after is None else pb.Resume(after_sequence=after)
        await chat.write(pb.ChatRequest(resume=r))
    return chat
