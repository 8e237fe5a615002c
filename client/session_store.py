"""The saved login of the one-shot commands: a small JSON file readable only by its owner.

The file is `platformdirs.user_config_dir("hubbub")/session.json` (on Linux
`$XDG_CONFIG_HOME/hubbub/session.json`) and holds
`{"server", "username", "token", "expire_time"}` with `expire_time` in ISO 8601, plus
`"ca_file"` when the login used one. `server` is the normalised target the token came
from (`ServerTarget.key`: `[grpcs://]host:port[,host:port…]`); the CLI never sends the
token to any other target. It is always created with mode 0600 (never widened by the
umask or by an older file).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import platformdirs

from .target import ServerTarget, parse_target

FILE_NAME = "session.json"


class SessionFileError(Exception):
    """The session file exists but cannot be read or understood."""


@dataclass(frozen=True)
class SavedSession:
    """A login kept between one-shot commands.

    `server` is the target text the token was issued by ("host:port", a comma list,
    `grpcs://…` for TLS); `token` the bearer token; `expire_time` a timezone-aware
    datetime after which the server refuses the token; `ca_file` the PEM file of trusted
    roots the login used ("" for the system roots or plaintext).
    """

    server: str
    username: str
    token: str
    expire_time: datetime
    ca_file: str = ""

    def target(self) -> ServerTarget:
        """The normalised target the token belongs to; TargetError if `server` is bad."""
        return parse_target(self.server, ca_file=self.ca_file)

    def expired(self, now: datetime | None = None) -> bool:
        """True if `now` (default: the current UTC time) is past `expire_time`."""
        return (now or datetime.now(UTC)) >= self.expire_time

    def to_json(self) -> str:
        """The file content: one JSON object."""
        data = {
            "server": self.server,
            "username": self.username,
            "token": self.token,
            "expire_time": self.expire_time.isoformat(),
        }
        if self.ca_file:
            data["ca_file"] = self.ca_file
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str) -> SavedSession:
        """Parse the file content; raises SessionFileError if it is not a valid session."""
        try:
            data = json.loads(text)
            expire = datetime.fromisoformat(data["expire_time"])
            if expire.tzinfo is None:
                expire = expire.replace(tzinfo=UTC)
            session = cls(
                server=str(data["server"]),
                username=str(data["username"]),
                token=str(data["token"]),
                expire_time=expire,
                ca_file=str(data.get("ca_file") or ""),
            )
            session.target()
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SessionFileError("the saved session file is damaged") from exc
        return session


def session_path() -> Path:
    """Where the session file lives (it may not exist)."""
    return Path(platformdirs.user_config_dir("hubbub")) / FILE_NAME


def save_session(session: SavedSession, path: Path | None = None) -> Path:
    """Write `session` atomically with mode 0600 and return the path written.

    The directory is created with mode 0700 if missing. Raises OSError if the
    file cannot be written.
    """
    target = path or session_path()
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(session.to_json() + "\n")
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return target


def load_session(path: Path | None = None) -> SavedSession | None:
    """Read the saved session; None if there is none.

    Raises SessionFileError if the file exists but is damaged or unreadable.
    """
    target = path or session_path()
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SessionFileError(f"cannot read {target}") from exc
    return SavedSession.from_json(text)


def delete_session(path: Path | None = None) -> bool:
    """Remove the session file; True if there was one."""
    target = path or session_path()
    try:
        target.unlink()
    except FileNotFoundError:
        return False
    return True
