"""Turning what native code writes to stderr into JSON records (server/logs.py)."""

from __future__ import annotations

import io
import json
import logging

from hubbub.server.logs import forward_native_lines


def _forward(text: str, level: int = logging.INFO) -> list[dict[str, object]]:
    sink = io.StringIO()
    forward_native_lines(io.BytesIO(text.encode()), sink, level)
    return [json.loads(line) for line in sink.getvalue().splitlines()]


def test_abseil_lines_become_grpc_core_records() -> None:
    """An Abseil line keeps its severity, text and file:line; other lines are stderr ERRORs."""
    records = _forward(
        "E1201 01:37:20.910532   25491 add_port.cc:83] Failed to add port\n"
        "\n"
        "W1201 01:37:42.881375   28606 log.cc:102] Log level INFO is not suitable\n"
        "Traceback (most recent call last):\n"
    )
    assert [(r["logger"], r["level"], r["msg"], r.get("source")) for r in records] == [
        ("grpc.core", "ERROR", "Failed to add port", "add_port.cc:83"),
        ("grpc.core", "WARNING", "Log level INFO is not suitable", "log.cc:102"),
        ("stderr", "ERROR", "Traceback (most recent call last):", None),
    ]
    assert all(str(r["time"]).endswith("+00:00") for r in records)


def test_lines_below_the_level_are_dropped() -> None:
    """With --log-level WARNING, gRPC's INFO lines are not written."""
    records = _forward(
        "I1201 01:37:42.881375   28606 server.cc:1] starting\n"
        "F1201 01:37:42.881375   28606 server.cc:2] fatal\n",
        logging.WARNING,
    )
    assert [(r["level"], r["msg"]) for r in records] == [("CRITICAL", "fatal")]
