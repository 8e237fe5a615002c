"""Start-up refusals are typed errors of the server's hierarchy (not bare RuntimeError)."""

from __future__ import annotations

import pytest

from hubbub.server import schema
from hubbub.server.app import server_credentials, start_server, throttle_policy
from hubbub.server.config import ServerConfig
from hubbub.server.directory_ldap import ldap_directory
from hubbub.server.errors import ConfigurationError, SchemaTooNew, StartupError
from hubbub.server.sql import SQLITE, Query

pytestmark = pytest.mark.timeout(30)


def test_half_a_tls_pair_is_a_configuration_error() -> None:
    """--tls-cert without --tls-key is refused as ConfigurationError, not worth retrying."""
    with pytest.raises(ConfigurationError, match="--tls-cert and --tls-key go together") as info:
        server_credentials(ServerConfig(tls_cert="server.pem"))
    assert isinstance(info.value, StartupError) and info.value.retry is False


def test_a_bad_limit_notation_is_a_configuration_error() -> None:
    """A --register-limit outside the ``limits`` notation is refused as ConfigurationError."""
    with pytest.raises(ConfigurationError, match="--register-limit"):
        throttle_policy(ServerConfig(register_limit="many"))


async def test_redis_without_postgres_is_a_configuration_error() -> None:
    """--redis-url without --postgres-url is refused before anything is opened."""
    with pytest.raises(ConfigurationError, match="--redis-url needs --postgres-url"):
        await start_server(ServerConfig(port=0, redis_url="redis://127.0.0.1:1"))


def test_startup_errors_stay_runtime_errors() -> None:
    """Callers that catch RuntimeError (hubbub-server's main) still catch them."""
    assert issubclass(StartupError, RuntimeError)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (ServerConfig(ldap_only=True), "need --ldap-url"),
        (ServerConfig(ldap_url="ldap://127.0.0.1"), "needs --ldap-user-dn"),
        (ServerConfig(ldap_url="http://x", ldap_user_dn="uid={username}"), "LDAP settings"),
    ],
)
def test_bad_ldap_settings_are_a_configuration_error(config: ServerConfig, message: str) -> None:
    """Inconsistent or malformed --ldap-* flags are refused as ConfigurationError."""
    with pytest.raises(ConfigurationError, match=message) as info:
        ldap_directory(config)
    assert info.value.retry is False and info.value.reason == "CONFIGURATION_INVALID"


def test_a_newer_schema_is_refused_as_schema_too_new() -> None:
    """A database written by a newer server is SchemaTooNew (still a RuntimeError), no retry."""

    def answer(query: Query) -> object:
        return schema.SCHEMA_VERSION + 1 if "max(version)" in query[0] else None

    op = schema.migrate(SQLITE)
    with pytest.raises(SchemaTooNew, match="upgrade hubbub-server") as info:
        query = next(op)
        while True:
            query = op.send(answer(query))
    assert isinstance(info.value, RuntimeError)
    assert info.value.retry is False and info.value.reason == "SCHEMA_TOO_NEW"
