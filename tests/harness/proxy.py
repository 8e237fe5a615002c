"""A small asyncio TCP proxy that injects network faults between a client and a server.

Faults (each applies to every connection through the proxy):

- ``delay_s``: wait this long before forwarding each chunk (both directions);
- ``stall()``: stop forwarding in both directions, sockets stay open (a pulled cable);
- ``stall_downstream()``: stop forwarding server → client only (a client that stops reading);
- ``resume()``: undo a stall;
- ``cut()``: close every connection with FIN;
- ``reset(mid_frame=True)``: forward only part of the next chunk, then close with RST.

Only loopback addresses are used. Every wait is bounded by the caller's timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass, field


@dataclass
class _Link:
    client_writer: asyncio.StreamWriter
    server_writer: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class FaultProxy:
    """Forward ``127.0.0.1:port`` → ``target_host:target_port`` with injectable faults.

    Args:
        target_host: server address (loopback).
        target_port: server port.
        chunk: bytes read per forwarding step.
    """

    def __init__(self, target_host: str, target_port: int, chunk: int = 16384) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.chunk = chunk
        self.delay_s = 0.0
        self.port = 0
        self.forwarded = 0  # bytes forwarded in total
        self._up = asyncio.Event()  # client → server flowing
        self._down = asyncio.Event()  # server → client flowing
        self._up.set()
        self._down.set()
        self._reset_next = False
        self._links: list[_Link] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        """Listen on a free loopback port; returns it."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    @property
    def address(self) -> str:
        """ "127.0.0.1:PORT" of the proxy."""
        return f"127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        """Open proxied connections."""
        return len(self._links)

    def stall(self) -> None:
        """Stop forwarding both ways; connections stay open."""
        self._up.clear()
        self._down.clear()

    def stall_downstream(self) -> None:
        """Stop forwarding server → client (the client looks like it stopped reading)."""
        self._down.clear()

    def resume(self) -> None:
        """Forward again."""
        self._up.set()
        self._down.set()

    def cut(self) -> None:
        """Close every connection (FIN)."""
        for link in list(self._links):
            self._close(link, rst=False)

    def reset(self, mid_frame: bool = False) -> None:
        """Reset every connection (RST); with ``mid_frame`` after half of the next chunk."""
        if mid_frame:
            self._reset_next = True
            return
        for link in list(self._links):
            self._close(link, rst=True)

    async def close(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for link in list(self._links):
            self._close(link, rst=True)
        self.resume()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.close()
            return
        link = _Link(writer, up_writer)
        self._links.append(link)
        link.tasks = [
            asyncio.create_task(self._pump(reader, up_writer, self._up, link)),
            asyncio.create_task(self._pump(up_reader, writer, self._down, link)),
        ]

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        flowing: asyncio.Event,
        link: _Link,
    ) -> None:
        try:
            while True:
                await flowing.wait()
                data = await reader.read(self.chunk)
                if not data:
                    break
                await flowing.wait()  # a stall while we held data: keep holding it
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                if self._reset_next:
                    self._reset_next = False
                    writer.write(data[: max(1, len(data) // 2)])
                    with contextlib.suppress(ConnectionError):
                        await writer.drain()
                    for other in list(self._links):
                        self._close(other, rst=True)
                    return
                writer.write(data)
                self.forwarded += len(data)
                await writer.drain()
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._close(link, rst=False)

    def _close(self, link: _Link, *, rst: bool) -> None:
        if link in self._links:
            self._links.remove(link)
        for writer in (link.client_writer, link.server_writer):
            sock = writer.get_extra_info("socket")
            if rst and sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.close()
        current = asyncio.current_task()
        for task in link.tasks:
            if task is not current:
                task.cancel()
