"""The database lock: an exclusive ``flock(2)`` on ``DB.lock`` next to an SQLite database.

A server holds it for its lifetime, so that restore, import and a second
server can tell the database is in use. The lock file is created 0600.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from .backup_errors import DatabaseInUse
from .store_sqlite import PRIVATE_FILE_MODE, make_private_dir

if sys.platform != "win32":
    import fcntl

__all__ = ["DatabaseLock", "database_in_use", "lock_path"]


@dataclass(slots=True)
class _Held:
    fd: int
    holders: int
    shared: bool


_HELD: dict[str, _Held] = {}  # lock file path → this process's open lock
_HELD_GUARD = threading.Lock()


def lock_path(database: str | Path) -> Path:
    """The lock file of ``database``: ``DB.lock`` next to the (symlink-resolved) file."""
    resolved = Path(database).resolve()
    return resolved.with_name(resolved.name + ".lock")


class DatabaseLock:
    """An exclusive ``flock(2)`` on ``DB.lock``, held by a server for its lifetime.

    The kernel drops the lock when the holder exits, even on SIGKILL, so a stale
    lock file never blocks anything; the file itself is left in place (it holds
    the pid of the last holder, for error messages). Use :meth:`acquire`.
    """

    def __init__(self, key: str) -> None:
        self._key = key
        self._released = False

    @classmethod
    def acquire(cls, database: str | Path, *, shared_in_process: bool = False) -> DatabaseLock:
        """Take the lock of ``database`` without waiting.

        Args:
            database: the SQLite file (need not exist; its directory is created).
            shared_in_process: servers pass True: several in-process servers on
                one database (tests do this) share the lock, while another
                process, and a restore or import in this process, are refused.

        Raises:
            DatabaseInUse: another process, or a non-shared holder here, has it.
            OSError: the lock file cannot be created.
        """
        path = lock_path(database)
        make_private_dir(path.parent)
        key = str(path)
        with _HELD_GUARD:
            held = _HELD.get(key)
            if held is not None:
                if not (shared_in_process and held.shared):
                    raise _in_use(database, path)
                held.holders += 1
                return cls(key)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE_MODE)
            try:
                os.fchmod(fd, PRIVATE_FILE_MODE)  # a lock file of an older version was 0644
                if sys.platform != "win32":  # no flock on Windows: in-process checks only
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise _in_use(database, path) from None
            except BaseException:
                os.close(fd)
                raise
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            _HELD[key] = _Held(fd, 1, shared_in_process)
            return cls(key)

    def release(self) -> None:
        """Give the lock up (idempotent); the last in-process holder closes the file."""
        with _HELD_GUARD:
            if self._released:
                return
            self._released = True
            held = _HELD[self._key]
            held.holders -= 1
            if held.holders == 0:
                del _HELD[self._key]
                os.close(held.fd)  # closing the only descriptor releases the flock


def _in_use(database: str | Path, path: Path) -> DatabaseInUse:
    pid = ""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        text = path.read_text().strip()
        pid = f" (pid {text})" if text.isdigit() else ""
    return DatabaseInUse(
        f"the database {database} is in use by a running hubbub-server{pid}; stop it first"
    )


def database_in_use(database: str | Path) -> bool:
    """True if a server (or a restore/import) holds the lock of ``database`` now."""
    try:
        DatabaseLock.acquire(database).release()
    except DatabaseInUse:
        return True
    return False
