"""Structured logging: ``key=value`` text (default) or one JSON object per line.

Records carry time, level, logger and message; extra fields passed with
``logger.info(..., extra={"user": "alice"})`` are added. Secrets (passwords,
tokens) are never passed to loggers by Hubbub code.

gRPC's Python loggers (``grpc.*``) propagate to the root handler like ours. gRPC's
C core logs through Abseil straight to file descriptor 2, bypassing Python; in
JSON mode that descriptor is therefore a pipe, and a forwarder process turns its
lines into records too (``NativeStderr``): C-core lines (``E1201 01:37:20.910532
25491 file.cc:83] text``) as logger ``grpc.core`` with their level and
``source``, anything else written to stderr as logger ``stderr`` at ERROR. So
every line on stderr is JSON.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from typing import IO, TextIO

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


def forward_native_lines(source: IO[bytes], sink: TextIO, level: int = logging.INFO) -> None:
    """Write each line of ``source`` to ``sink`` as a JSON record (see ``native_record``),
    dropping records below ``level`` and blank lines, until ``source`` ends."""
    formatter = JsonFormatter()
    for raw in source:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line.strip():
            continue
        name, record_level, message, extra = native_record(line)
        if record_level < level:
            continue
        record = logging.makeLogRecord(
            {
                "name": name,
                "levelno": record_level,
                "levelname": logging.getLevelName(record_level),
                "msg": message,
                **extra,
            }
        )
        sink.write(formatter.format(record) + "\n")
        sink.flush()


class NativeStderr:
    """Routes what native code (gRPC's C core) writes to fd 2 into JSON records.

    ``start()`` keeps a duplicate of the real stderr (returned, for the log
    handler), points fd 2 at a pipe and starts a forwarder process (``python -m
    hubbub.server.logs LEVEL``) that reads the pipe and writes one JSON record per
    line to the real stderr. A process rather than a thread, so that the lines
    written just before the server dies (a fatal ``F`` line, then ``abort()``)
    are still forwarded: the forwarder ends when the last write end of the pipe
    closes, i.e. when the server (and anything it started) has exited. It runs
    in a session of its own, so a Ctrl-C meant for the server does not stop it
    first.
    """

    def __init__(self) -> None:
        self.stream: TextIO = sys.stderr
        self.forwarder: subprocess.Popen[bytes] | None = None

    def start(self, level: str | int = logging.INFO) -> TextIO:
        """Redirect fd 2; returns a text stream on the real stderr for log handlers.
        Native lines below ``level`` (a number or a name such as ``"INFO"``) are dropped.

        Raises:
            OSError: the pipe or the forwarder process cannot be created.
        """
        if isinstance(level, str):
            level = logging.getLevelNamesMapping()[level.upper()]
        sys.stderr.flush()
        real_fd = os.dup(2)
        read_end, write_end = os.pipe()
        try:
            self.forwarder = subprocess.Popen(
                [sys.executable, "-m", __name__, str(level)],
                stdin=read_end,
                stdout=real_fd,
                stderr=real_fd,
                start_new_session=True,
            )
        except OSError:
            os.close(write_end)
            os.close(real_fd)
            raise
        finally:
            os.close(read_end)
        os.dup2(write_end, 2)
        os.close(write_end)
        self.stream = open(  # noqa: SIM115 - lives as long as the process
            real_fd, "w", encoding="utf-8", errors="replace", buffering=1
        )
        return self.stream


_native: NativeStderr | None = None


def configure(level: str, fmt: str) -> None:
    """Log to stderr at ``level`` in ``fmt`` (``"text"`` or ``"json"``).

    In JSON mode, fd 2 is routed through ``NativeStderr`` (once per process), so
    gRPC's C-core lines become JSON records as well.
    """
    global _native
    stream: TextIO = sys.stderr
    failure: OSError | None = None
    if fmt == "json":
        if _native is None:
            _native = NativeStderr()
            try:
                _native.start(level)
            except OSError as exc:  # no pipe or process to spare: C-core lines stay text
                failure = exc
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
    if failure is not None:
        logging.getLogger(__name__).warning("gRPC's own log lines stay plain text: %s", failure)


if __name__ == "__main__":  # the forwarder process of NativeStderr
    forward_native_lines(sys.stdin.buffer, sys.stdout, int(sys.argv[1]))
