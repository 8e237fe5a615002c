"""Unit tests of the saved-login file: location, JSON shape, mode 0600, damage handling."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hubbub.client.session_store import (
    SavedSession,
    SessionFileError,
    delete_session,
    load_session,
    save_session,
    session_path,
)

SESSION = SavedSession(
    server="127.0.0.1:50051",
    username="alice",
    token="t0k3n",
    expire_time=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
)


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """XDG_CONFIG_HOME pointed at a temp dir."""
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    return home


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask of 0, the worst case for file modes."""
    old = os.umask(0)
    yield
    os.umask(old)


def test_session_path_follows_xdg_config_home(config_home: Path) -> None:
    """The file is $XDG_CONFIG_HOME/hubbub/session.json."""
    assert session_path() == config_home / "hubbub" / "session.json"


def test_saved_file_has_mode_0600_even_with_umask_0(config_home: Path, open_umask: None) -> None:
    """The token file is readable and writable by its owner only."""
    path = save_session(SESSION)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_saving_over_a_world_readable_file_makes_it_0600(
    config_home: Path, open_umask: None
) -> None:
    """An older 0644 file is replaced, not reused with its loose mode."""
    path = session_path()
    path.parent.mkdir(parents=True)
    path.write_text("{}")
    path.chmod(0o644)
    save_session(SESSION)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_file_is_json_with_the_four_fields(config_home: Path) -> None:
    """The file holds server, username, token and an ISO 8601 expire_time."""
    data = json.loads(save_session(SESSION).read_text())
    assert data == {
        "server": "127.0.0.1:50051",
        "username": "alice",
        "token": "t0k3n",
        "expire_time": "2030-01-02T03:04:05+00:00",
    }


def test_round_trip(config_home: Path) -> None:
    """What is saved loads back equal."""
    save_session(SESSION)
    assert load_session() == SESSION


def test_missing_file_loads_as_none(config_home: Path) -> None:
    """No file means not logged in, not an error."""
    assert load_session() is None


def test_damaged_file_raises_session_file_error(config_home: Path) -> None:
    """A file that is not a session is reported as damaged."""
    path = session_path()
    path.parent.mkdir(parents=True)
    path.write_text('{"server": 1}')
    with pytest.raises(SessionFileError):
        load_session()


def test_delete(config_home: Path) -> None:
    """delete_session removes the file and says whether there was one."""
    save_session(SESSION)
    assert delete_session() is True
    assert not session_path().exists()
    assert delete_session() is False


def test_expiry() -> None:
    """A session is expired from its expire_time on."""
    assert not SESSION.expired(SESSION.expire_time - timedelta(seconds=1))
    assert SESSION.expired(SESSION.expire_time)
