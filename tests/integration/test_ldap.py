"""Integration tests of LDAP login against a real OpenLDAP slapd (docs/protocol.md
§Authentication)."""

from __future__ import annotations

import argparse
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from hubbub.server import config as config_module
from hubbub.server.config import ServerConfig
from hubbub.v1 import messenger_pb2 as pb

from .conftest import PASSWORD, Node, auth, open_chat, register_login
from .ldap_fixture import LENA, OMAR, Slapd, free_port, slapd

__all__ = ["slapd"]  # the fixture is used by name

pytestmark = pytest.mark.timeout(60)

NodeFactory = Callable[..., Awaitable[Node]]


def ldap(server: Slapd, **extra: Any) -> dict[str, Any]:
    """ServerConfig overrides for plain ``ldap://`` login against ``server``."""
    return {"ldap_url": server.url, "ldap_user_dn": server.user_dn, **extra}


async def login(node: Node, username: str, password: str) -> pb.LoginResponse:
    """Call Login."""
    reply: pb.LoginResponse = await node.stub.Login(
        pb.LoginRequest(username=username, password=password)
    )
    return reply


async def login_fails(node: Node, username: str, password: str) -> tuple[grpc.StatusCode, str]:
    """Call Login expecting an error; return its status code and ErrorInfo reason."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await login(node, username, password)
    status = rpc_status.from_call(info.value)  # type: ignore[arg-type]  # an AioRpcError is a grpc.Call
    reason = ""
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            error_info = error_details_pb2.ErrorInfo()
            detail.Unpack(error_info)
            reason = error_info.reason
    return info.value.code(), reason


UNAUTHENTICATED = (grpc.StatusCode.UNAUTHENTICATED, "AUTHENTICATION_FAILED")
DIRECTORY_DOWN = (grpc.StatusCode.UNAVAILABLE, "DIRECTORY_UNAVAILABLE")


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts TCP connections and never answers (a hung directory)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


async def test_directory_user_is_created_on_first_login(
    slapd: Slapd, node_factory: NodeFactory
) -> None:
    """A directory user logs in with the LDAP password; the account is created, listed, can chat."""
    node = await node_factory(**ldap(slapd))
    reply = await login(node, "Lena", LENA.password)
    assert (reply.user.username, reply.user.display_name) == ("lena", LENA.display_name)
    users = await node.stub.ListUsers(pb.ListUsersRequest(), metadata=auth(reply.token))
    assert [(u.username, u.display_name) for u in users.users] == [
        ("echobot", "Echo Bot"),
        ("lena", "Lena L."),
    ]
    chat = await open_chat(node, reply.token)
    assert chat.seen[0].welcome.user.username == "lena"
    await chat.send("echobot", "ping", "c1")
    assert (await chat.next("send_result")).send_result.client_id == "c1"
    await chat.close()
    again = await login(node, "lena", LENA.password)
    assert again.user.username == "lena" and again.token != reply.token


async def test_display_name_falls_back_to_cn(slapd: Slapd, node_factory: NodeFactory) -> None:
    """An entry without displayName gives the account its cn as display name."""
    node = await node_factory(**ldap(slapd))
    reply = await login(node, "omar", OMAR.password)
    assert reply.user.display_name == OMAR.cn


async def test_wrong_directory_password_is_unauthenticated(
    slapd: Slapd, node_factory: NodeFactory
) -> None:
    """A wrong LDAP password gives the same UNAUTHENTICATED as a local one, and no account."""
    node = await node_factory(**ldap(slapd))
    assert await login_fails(node, "lena", OMAR.password) == UNAUTHENTICATED
    token = await register_login(node, "nadia")
    users = await node.stub.ListUsers(pb.ListUsersRequest(), metadata=auth(token))
    assert "lena" not in [u.username for u in users.users]


async def test_unknown_uid_is_unauthenticated(slapd: Slapd, node_factory: NodeFactory) -> None:
    """A name with no directory entry (unknown DN) gives UNAUTHENTICATED."""
    node = await node_factory(**ldap(slapd))
    assert await login_fails(node, "zoe", LENA.password) == UNAUTHENTICATED


async def test_empty_password_is_never_an_anonymous_bind(
    slapd: Slapd, node_factory: NodeFactory
) -> None:
    """An empty password is refused (RFC 4513 §5.1.2 unauthenticated bind) with UNAUTHENTICATED."""
    node = await node_factory(**ldap(slapd))
    assert await login_fails(node, "lena", "") == UNAUTHENTICATED


async def test_dn_metacharacters_are_refused_before_the_directory(
    slapd: Slapd, node_factory: NodeFactory
) -> None:
    """A username with DN syntax (``,``, ``=``) fails the username rules: INVALID_ARGUMENT."""
    node = await node_factory(**ldap(slapd))
    code, _ = await login_fails(node, f"lena,{slapd.user_dn.split(',', 1)[1]}", LENA.password)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = await login_fails(node, "uid=lena", LENA.password)
    assert code == grpc.StatusCode.INVALID_ARGUMENT


async def test_wrong_directory_passwords_feed_the_throttle(
    slapd: Slapd, node_factory: NodeFactory
) -> None:
    """Five wrong LDAP passwords lock the name like local failures do (RESOURCE_EXHAUSTED)."""
    node = await node_factory(**ldap(slapd))
    for _ in range(5):
        assert await login_fails(node, "omar", "not the password") == UNAUTHENTICATED
    code, _ = await login_fails(node, "omar", OMAR.password)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_local_accounts_still_work_without_ldap_only(
    slapd: Slapd, node_factory: NodeFactory
) -> None:
    """Without --ldap-only, Register + Login with a local password keeps working."""
    node = await node_factory(**ldap(slapd))
    token = await register_login(node, "nadia")
    assert token
    assert await login_fails(node, "nadia", "wrong password") == UNAUTHENTICATED


async def test_local_password_account_is_not_taken_over_by_the_directory(
    slapd: Slapd, node_factory: NodeFactory
) -> None:
    """Without --ldap-only, a local account named like a directory user keeps its local password."""
    node = await node_factory(**ldap(slapd))
    await register_login(node, "lena", "Local Lena")
    assert (await login(node, "lena", PASSWORD)).user.display_name == "Local Lena"
    assert await login_fails(node, "lena", LENA.password) == UNAUTHENTICATED


async def test_ldap_only_refuses_local_accounts(slapd: Slapd, node_factory: NodeFactory) -> None:
    """With --ldap-only a local-only account cannot log in; directory users still can."""
    local = await node_factory()
    await local.stub.Register(pb.RegisterRequest(username="nadia", password=PASSWORD))
    node = await node_factory(**ldap(slapd, ldap_only=True))
    assert await login_fails(node, "nadia", PASSWORD) == UNAUTHENTICATED
    assert (await login(node, "omar", OMAR.password)).user.username == "omar"


async def test_ldap_only_closes_registration(slapd: Slapd, node_factory: NodeFactory) -> None:
    """With --ldap-only Register is refused, so nobody can squat a directory user's name."""
    node = await node_factory(**ldap(slapd, ldap_only=True))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await node.stub.Register(pb.RegisterRequest(username="omar", password=PASSWORD))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (await login(node, "omar", OMAR.password)).user.username == "omar"


async def test_ldap_only_lets_the_directory_decide_for_local_names(
    slapd: Slapd, node_factory: NodeFactory
) -> None:
    """With --ldap-only an existing local account is entered with the directory password only."""
    local = await node_factory()
    await register_login(local, "lena", "Local Lena")
    node = await node_factory(**ldap(slapd, ldap_only=True))
    assert await login_fails(node, "lena", PASSWORD) == UNAUTHENTICATED
    reply = await login(node, "lena", LENA.password)
    assert (reply.user.username, reply.user.display_name) == ("lena", "Local Lena")


async def test_directory_account_has_no_local_password(
    slapd: Slapd, node_factory: NodeFactory
) -> None:
    """An account the directory created cannot log in locally once LDAP is off (unusable hash)."""
    node = await node_factory(**ldap(slapd))
    await login(node, "lena", LENA.password)
    plain = await node_factory()
    assert await login_fails(plain, "lena", LENA.password) == UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await plain.stub.Register(pb.RegisterRequest(username="lena", password=LENA.password))
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_directory_down_is_unavailable(
    node_factory: NodeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """An unreachable directory gives UNAVAILABLE and logs a warning without the password."""
    node = await node_factory(
        ldap_url=f"ldap://127.0.0.1:{free_port()}", ldap_user_dn="uid={username},dc=x"
    )
    with caplog.at_level(logging.WARNING, logger="hubbub.server.directory_ldap"):
        # each try counts towards the throttle's budget of 5 (a bind that timed out may
        # have been evaluated), so the 6th is refused before reaching the directory
        for _ in range(5):
            assert await login_fails(node, "lena", LENA.password) == DIRECTORY_DOWN
        code, _ = await login_fails(node, "lena", LENA.password)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert any("unreachable" in r.getMessage() for r in caplog.records)
    assert LENA.password not in caplog.text
    assert await register_login(node, "nadia")  # local accounts do not need the directory


async def test_directory_that_never_answers_times_out(
    silent_port: int, node_factory: NodeFactory
) -> None:
    """A directory that accepts but never answers gives UNAVAILABLE once the timeout passes."""
    node = await node_factory(
        ldap_url=f"ldap://127.0.0.1:{silent_port}",
        ldap_user_dn="uid={username},dc=x",
        ldap_timeout_s=1.0,
    )
    started = time.monotonic()
    assert await login_fails(node, "lena", LENA.password) == DIRECTORY_DOWN
    assert time.monotonic() - started < 10


async def test_start_tls_with_ca_file(slapd: Slapd, node_factory: NodeFactory) -> None:
    """--ldap-start-tls with --ldap-ca-file verifies the server and logs the user in."""
    node = await node_factory(**ldap(slapd, ldap_start_tls=True, ldap_ca_file=slapd.ca_file))
    assert (await login(node, "lena", LENA.password)).user.username == "lena"
    assert await login_fails(node, "lena", OMAR.password) == UNAUTHENTICATED


async def test_ldaps_with_ca_file(slapd: Slapd, node_factory: NodeFactory) -> None:
    """An ldaps:// URL with --ldap-ca-file logs the user in over TLS."""
    node = await node_factory(
        ldap_url=slapd.ldaps_url, ldap_user_dn=slapd.user_dn, ldap_ca_file=slapd.ca_file
    )
    assert (await login(node, "omar", OMAR.password)).user.username == "omar"


async def test_untrusted_certificate_is_unavailable(
    slapd: Slapd, node_factory: NodeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """StartTLS/ldaps:// to a server with an untrusted CA fails before any bind: UNAVAILABLE."""
    node = await node_factory(**ldap(slapd, ldap_start_tls=True))
    ldaps = await node_factory(ldap_url=slapd.ldaps_url, ldap_user_dn=slapd.user_dn)
    with caplog.at_level(logging.WARNING, logger="hubbub.server.directory_ldap"):
        assert await login_fails(node, "lena", LENA.password) == DIRECTORY_DOWN
        assert await login_fails(ldaps, "lena", LENA.password) == DIRECTORY_DOWN
    failures = [r.getMessage() for r in caplog.records]
    assert len(failures) == 2
    assert all("CERTIFICATE_VERIFY_FAILED" in m for m in failures), failures


@pytest.mark.parametrize(
    "overrides",
    [
        {"ldap_only": True},
        {"ldap_url": "ldap://127.0.0.1:389"},
        {"ldap_url": "http://127.0.0.1", "ldap_user_dn": "uid={username},dc=x"},
        {"ldap_url": "ldap://127.0.0.1", "ldap_user_dn": "uid=fixed,dc=x"},
        {"ldap_url": "ldaps://127.0.0.1", "ldap_user_dn": "uid={username}", "ldap_start_tls": True},
        {"ldap_url": "ldap://127.0.0.1", "ldap_user_dn": "uid={username}", "ldap_ca_file": "/nx"},
    ],
)
async def test_inconsistent_ldap_settings_refuse_to_start(
    node_factory: NodeFactory, overrides: dict[str, Any]
) -> None:
    """Inconsistent --ldap-* settings stop the server at start with a RuntimeError."""
    with pytest.raises(RuntimeError, match=r"(?i)ldap"):
        await node_factory(**overrides)


def test_ldap_flags_read_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every --ldap-* flag defaults to its HUBBUB_LDAP_* environment variable."""
    env = {
        "HUBBUB_LDAP_URL": "ldaps://ldap.example:636",
        "HUBBUB_LDAP_USER_DN": "uid={username},ou=people,dc=example",
        "HUBBUB_LDAP_START_TLS": "false",
        "HUBBUB_LDAP_CA_FILE": "/etc/ssl/ca.pem",
        "HUBBUB_LDAP_ONLY": "true",
        "HUBBUB_LDAP_TIMEOUT": "2.5",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    parser = argparse.ArgumentParser()
    config_module.add_arguments(parser)
    cfg = config_module.from_arguments(parser.parse_args([]))
    assert (
        cfg.ldap_url,
        cfg.ldap_user_dn,
        cfg.ldap_start_tls,
        cfg.ldap_ca_file,
        cfg.ldap_only,
        cfg.ldap_timeout_s,
    ) == (
        "ldaps://ldap.example:636",
        "uid={username},ou=people,dc=example",
        False,
        "/etc/ssl/ca.pem",
        True,
        2.5,
    )
    flags = parser.parse_args(["--ldap-start-tls", "--no-ldap-only", "--ldap-timeout", "3"])
    cfg = config_module.from_arguments(flags)
    assert (cfg.ldap_start_tls, cfg.ldap_only, cfg.ldap_timeout_s) == (True, False, 3.0)
    assert ServerConfig().ldap_url == ""  # LDAP is off by default
