"""Security tests: in-process servers on port 0 (as in tests/integration) reached from chosen
loopback source addresses.

gRPC has no channel option to pick a client's source address, so
:class:`SourceRelay` listens on 127.0.0.1 and opens each upstream connection to
the server from a given address of 127.0.0.0/8 (all of it is loopback on Linux):
the server's ``context.peer()`` then shows that address, as it would for
clients on different machines.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from hubbub.server.config import ServerConfig
from hubbub.v1 import messenger_pb2_grpc as pb_grpc
from tests.integration.conftest import Node, close_node, open_node

NodeFactory = Callable[..., Awaitable[Node]]


class SourceRelay:
    """Forward ``127.0.0.1:port`` to the server, connecting upstream from ``source``.

    Args:
        target_port: the server's port on 127.0.0.1.
        source: the loopback address the server sees, e.g. ``"127.0.0.2"``.
    """

    def __init__(self, target_port: int, source: str) -> None:
        self.target_port = target_port
        self.source = source
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(
            "127.0.0.1", self.target_port, local_addr=(self.source, 0)
        )
        self._writers += [writer, up_writer]
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def close(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A temp SQLite path."""
    return tmp_path / "hubbub.db"


@pytest.fixture
async def node_factory(db_path: Path) -> AsyncIterator[NodeFactory]:
    """Start in-process servers (``**overrides`` of ServerConfig); stopped at teardown."""
    nodes: list[Node] = []

    async def make(**overrides: Any) -> Node:
        settings: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "database": str(db_path),
            "grace_s": 1.0,
        }
        node = await open_node(ServerConfig(**{**settings, **overrides}))
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        await close_node(node)


@pytest.fixture
async def node(node_factory: NodeFactory) -> Node:
    """One in-process server with default settings."""
    return await node_factory()


@pytest.fixture
async def stub_from() -> AsyncIterator[
    Callable[[Node, str], Awaitable[pb_grpc.MessengerServiceStub]]
]:
    """``await stub_from(node, "127.0.0.2")``: a stub reaching ``node`` from that address."""
    relays: list[SourceRelay] = []
    channels: list[grpc.aio.Channel] = []

    async def make(node: Node, source: str) -> pb_grpc.MessengerServiceStub:
        relay = SourceRelay(node.server.port, source)
        await relay.start()
        relays.append(relay)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{relay.port}")
        channels.append(channel)
        return pb_grpc.MessengerServiceStub(channel)

    yield make
    for channel in channels:
        await channel.close(None)
    for relay in relays:
        await relay.close()
