"""Prometheus metrics (text exposition format) for one Hubbub node.

Each server gets its own :class:`prometheus_client.CollectorRegistry`, so several
servers in one process (tests) do not clash. ``--metrics-port`` serves it over
HTTP at ``/metrics``; names follow the Prometheus naming guide (``_total`` for
counters, base units).
"""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)


class Metrics:
    """The node's counters and gauges.

    Attributes:
        streams_active: live Chat streams on this node.
        streams_opened: Chat streams opened.
        streams_closed: Chat streams closed, by reason (``normal``, ``SLOW_CONSUMER``, …).
        messages_stored: messages stored, by kind (``direct``, ``group``), duplicates excluded.
        sends_duplicate: sends recognised as resends of a stored client id.
        events_written: server events written to streams.
        asyncio_tasks: tasks alive on the server's event loop (sampled every second).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        r = self.registry
        self.streams_active = Gauge("hubbub_streams_active", "Live Chat streams.", registry=r)
        self.streams_opened = Counter("hubbub_streams_opened", "Chat streams opened.", registry=r)
        self.streams_closed = Counter(
            "hubbub_streams_closed", "Chat streams closed, by reason.", ["reason"], registry=r
        )
        self.messages_stored = Counter(
            "hubbub_messages_stored", "Messages stored durably, by kind.", ["kind"], registry=r
        )
        self.sends_duplicate = Counter(
            "hubbub_sends_duplicate", "Resends recognised by client id.", registry=r
        )
        self.events_written = Counter(
            "hubbub_events_written", "Server events written to Chat streams.", registry=r
        )
        self.asyncio_tasks = Gauge(
            "hubbub_asyncio_tasks", "Tasks alive on the event loop.", registry=r
        )
        self._sampler: asyncio.Task[None] | None = None

    def start_sampling(self, interval_s: float = 1.0) -> None:
        """Sample loop-level gauges every ``interval_s`` seconds from inside the loop."""
        self._sampler = asyncio.create_task(self._sample(interval_s), name="metrics-sampler")

    async def _sample(self, interval_s: float) -> None:
        while True:
            self.asyncio_tasks.set(len(asyncio.all_tasks()))
            await asyncio.sleep(interval_s)

    async def stop(self) -> None:
        """Stop sampling."""
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler

    def serve_http(self, host: str, port: int) -> int:
        """Serve ``/metrics`` on ``host:port`` (0 = any free port) in a thread; returns the port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_port)
