"""Process CPU and memory from ``/proc``, machine facts, and the event loop runner."""

from __future__ import annotations

import asyncio
import os
import platform
import resource
import sqlite3
import subprocess
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.internal import api_implementation

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
    uvloop = None  # type: ignore[assignment]

T = TypeVar("T")
REPO_ROOT = Path(__file__).resolve().parents[2]


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on uvloop when available (as hubbub-server does), else asyncio."""
    if uvloop is not None:
        return uvloop.run(coro)
    return asyncio.run(coro)  # pragma: no cover


def process_cpu_s(pid: int) -> float | None:
    """User+system CPU seconds used so far by process ``pid`` (Linux /proc), else None."""
    times = process_cpu_split_s(pid)
    return None if times is None else times[0] + times[1]


def process_cpu_split_s(pid: int) -> tuple[float, float] | None:
    """(user, system) CPU seconds used so far by process ``pid``, else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def process_rss_bytes(pid: int) -> int | None:
    """Resident set size of process ``pid`` in bytes (``VmRSS``), else None."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None


def descendants(pid: int) -> list[int]:
    """``pid`` and every live process below it (from the ``ppid`` of ``/proc/*/stat``)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid] if pid > 0 else []
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def raise_nofile(wanted: int) -> int:
    """Raise this process's open-file soft limit towards ``wanted`` (up to the hard limit).

    Returns the soft limit now in force (children inherit it).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def cpu_model() -> str | None:
    """The CPU model name from ``/proc/cpuinfo``, if readable."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def disk_of(path: Path) -> str | None:
    """``device fstype`` of the mount holding ``path`` (+ ``ssd``/``hdd`` when known)."""
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return None
    target = str(path.resolve())
    best: list[str] | None = None
    for fields in mounts:
        mount_point = fields[1]
        if (target == mount_point or target.startswith(mount_point.rstrip("/") + "/")) and (
            best is None or len(mount_point) > len(best[1])
        ):
            best = fields
    if best is None:
        return None
    device, fstype = best[0], best[2]
    kind = ""
    name = Path(device).name
    for candidate in (name, name.rstrip("0123456789"), name.rsplit("p", 1)[0]):
        rotational = Path(f"/sys/block/{candidate}/queue/rotational")
        if rotational.exists():
            kind = " hdd" if rotational.read_text().strip() == "1" else " ssd"
            break
    return f"{device} {fstype}{kind}"


def machine_facts(tmpdir: Path | None = None) -> dict[str, Any]:
    """Cores, CPU model, platform, Python, grpcio/protobuf/uvloop/SQLite versions, disk."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "cpu_model": cpu_model(),
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "protobuf_impl": api_implementation.Type(),
        "uvloop": getattr(uvloop, "__version__", None) if uvloop is not None else None,
        "sqlite": sqlite3.sqlite_version,
        "disk": disk_of(tmpdir) if tmpdir is not None else None,
        "hubbub_revision": source_revision(),
    }


def source_revision() -> str | None:
    """``git describe``-style revision of the checkout, ``+dirty`` if server/protos changed."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "server", "protos"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def loadavg_1m() -> float | None:
    """The 1-minute load average (runnable processes), a hint of other work on the machine."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
