"""Unit tests of ServerTarget: parsing and normalising server addresses, TLS schemes,
loopback detection and the rule for which saved login a target may use."""

from __future__ import annotations

import pytest

from hubbub.client.session_store import SavedSession, SessionFileError
from hubbub.client.target import ServerTarget, TargetError, parse_target


@pytest.mark.parametrize(
    ("typed", "key", "tls"),
    [
        ("127.0.0.1:50051", "127.0.0.1:50051", False),
        ("Chat.Example.ORG.", "chat.example.org:50051", False),
        ("[::1]:7000", "[::1]:7000", False),
        ("::1", "[::1]:50051", False),
        ("grpcs://h:443", "grpcs://h:443", True),
        ("https://h/", "grpcs://h:50051", True),
        ("grpc://h:1", "h:1", False),
        ("ipv4:10.0.0.1:1,10.0.0.2:2", "10.0.0.1:1,10.0.0.2:2", False),
        (" a:1 , b:2 ,a:1", "a:1,b:2", False),
    ],
)
def test_addresses_are_normalised(typed: str, key: str, tls: bool) -> None:
    """Host lower-case without a trailing dot, default port 50051, IPv6 in brackets,
    duplicates dropped, TLS from the scheme; `key` is the canonical text."""
    target = parse_target(typed)
    assert (target.key, target.tls) == (key, tls)
    assert parse_target(target.key) == target


@pytest.mark.parametrize(
    ("typed", "kwargs"),
    [
        ("", {}),
        (" , ", {}),
        ("h:0", {}),
        ("h:99999", {}),
        ("h:http", {}),
        ("[::1", {}),
        ("grpcs://a:1,grpc://b:2", {}),
        ("grpc://a:1", {"tls": True}),
    ],
)
def test_bad_targets_are_one_clear_error(typed: str, kwargs: dict[str, bool]) -> None:
    """Empty lists, bad ports, mixed transports are TargetError (a ValueError)."""
    with pytest.raises(TargetError):
        parse_target(typed, **kwargs)  # type: ignore[arg-type]


def test_tls_flags_and_ca_file() -> None:
    """--tls or --ca-file switch TLS on for a plain address; with_tls never switches it off."""
    assert parse_target("h:1", tls=True).key == "grpcs://h:1"
    assert parse_target("h:1", ca_file="/ca.pem") == ServerTarget(("h:1",), True, "/ca.pem")
    assert parse_target("grpcs://h:1").with_tls(False).tls


def test_loopback_means_every_address_is_this_machine() -> None:
    """127/8, ::1 and localhost (RFC 6761) are loopback; one remote node is not."""
    assert parse_target("127.0.0.1:1,localhost:2,[::1]:3,x.localhost:4").is_loopback()
    assert not parse_target("127.0.0.1:1,10.0.0.1:2").is_loopback()
    assert not parse_target("localhost.example.org").is_loopback()
    assert not parse_target("0.0.0.0:1").is_loopback()


def test_a_saved_login_fits_its_own_target_and_subsets_only() -> None:
    """Same transport and a subset of the saved nodes: yes; another host or TLS: no."""
    saved = parse_target("a:1,b:2")
    assert parse_target("b:2").may_use_session_of(saved)
    assert parse_target("b:2,a:1").may_use_session_of(saved)
    assert not parse_target("a:1,c:3").may_use_session_of(saved)
    assert not parse_target("grpcs://a:1").may_use_session_of(saved)
    assert not parse_target("a:1").may_use_session_of(parse_target("grpcs://a:1"))


def test_a_session_file_with_a_bad_server_is_damaged() -> None:
    """A saved server that is not an address makes the file unusable, not a crash later."""
    text = '{"server": "h:http", "username": "a", "token": "t", "expire_time": "2030-01-01"}'
    with pytest.raises(SessionFileError):
        SavedSession.from_json(text)
