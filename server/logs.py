"""Structured logging: ``key=value`` text (default) or one JSON object per line.

Records carry time, level, logger and message; extra fields passed with
``logger.info(..., extra={"user": "alice"})`` are added. Secrets (passwords,
tokens) are never passed to loggers by Hubbub code.

gRPC's Python loggers (``grpc.*``) propagate to the root handler like ours. gRPC's
C core logs through Abseil straight to file descriptor 2, bypassing Python; in
JSON mode that descriptor is therefore a pipe whose lines are turned into records
too (``NativeStderr``): C-core lines (``E1201 01:37:20.910532 25491 file.cc:83]
text``) as logger ``grpc.core`` with their level and ``source``, anything else
written to stderr as logger ``stderr`` at ERROR. So every line on stderr is JSON.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import sys
import threading
from datetime import UTC, datetime
from typing import TextIO

_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

#: Abseil's log line prefix: severity, MMDD hh:mm:ss.micros, thread id, file:line].
ABSL_LINE = re.compile(
    r"^(?P<severity>[IWEF])\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ (?P<source>[^\s\]]+:\d+)\] ?(?P<msg>.*)$"
)
ABSL_LEVELS = {"I": logging.INFO, "W": logging.WARNING, "E": logging.ERROR, "F": logging.CRITICAL}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (RFC 3339, UTC), ``level``, ``logger``, ``msg``."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a JSON line."""
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def native_record(line: str) -> tuple[str, int, str, dict[str, str]]:
    """(logger name, level, message, extra fields) for one line written to fd 2.

    An Abseil line from gRPC's C core gives ``grpc.core``, its severity and
    ``{"source": "file.cc:LINE"}``; any other line gives ``stderr`` at ERROR.
    """
    match = ABSL_LINE.match(line)
    if match is None:
        return "stderr", logging.ERROR, line, {}
    level = ABSL_LEVELS[match["severity"]]
    return "grpc.core", level, match["msg"], {"source": match["source"]}


class NativeStderr:
    """Routes what native code (gRPC's C core) writes to fd 2 through ``logging``.

    ``start()`` keeps a duplicate of the real stderr (``stream``, for the log
    handler), points fd 2 at a pipe and reads the pipe in a daemon thread, one
    record per line (see ``native_record``). ``stop()`` (also run at exit) points
    fd 2 back at the real stderr and waits up to ``drain_s`` seconds for the
    lines already written.
    """

    def __init__(self, drain_s: float = 2.0) -> None:
        self.drain_s = drain_s
        self._real_fd = -1
        self._thread: threading.Thread | None = None
        self.stream: TextIO = sys.stderr

    def start(self) -> TextIO:
        """Redirect fd 2; returns a text stream on the real stderr for log handlers."""
        sys.stderr.flush()
        self._real_fd = os.dup(2)
        self.stream = open(  # noqa: SIM115 - lives as long as the process
            self._real_fd, "w", encoding="utf-8", errors="replace", buffering=1, closefd=False
        )
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self._thread = threading.Thread(
            target=self._pump, args=(read_end,), name="native-stderr", daemon=True
        )
        self._thread.start()
        atexit.register(self.stop)
        return self.stream

    def stop(self) -> None:
        """Give fd 2 back to the real stderr and log what is still in the pipe."""
        if self._thread is None:
            return
        sys.stderr.flush()
        os.dup2(self._real_fd, 2)  # closes the pipe's last write end: the reader sees EOF
        self._thread.join(self.drain_s)
        self._thread = None

    @staticmethod
    def _pump(read_end: int) -> None:
        with open(read_end, "rb") as pipe:
            for raw in pipe:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if not line.strip():
                    continue
                name, level, message, extra = native_record(line)
                logging.getLogger(name).log(level, "%s", message, extra=extra)


_native: NativeStderr | None = None


def configure(level: str, fmt: str) -> None:
    """Log to stderr at ``level`` in ``fmt`` (``"text"`` or ``"json"``).

    In JSON mode, fd 2 is routed through ``NativeStderr`` (once per process), so
    gRPC's C-core lines become JSON records as well.
    """
    global _native
    stream: TextIO = sys.stderr
    if fmt == "json":
        if _native is None:
            _native = NativeStderr()
            _native.start()
        stream = _native.stream
    handler = logging.StreamHandler(stream)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
