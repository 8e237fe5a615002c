"""LDAP login directory: an LDAP simple bind checks the password (docs/protocol.md §Authentication).

Sources:
    RFC 4513 §5.1 (simple bind; §5.1.2: a bind with a name and an *empty*
    password is an "unauthenticated bind" that servers may accept, so empty
    passwords are refused here before any bind), §3 (StartTLS, done before the
    bind so the password never crosses the network in clear when TLS is asked for).
    RFC 4514 §2.4 (escaping of attribute values in a DN; done by
    ``ldap3.utils.dn.escape_rdn``). RFC 4511 §4.1.9 (result codes).

The bind is blocking (ldap3's SYNC strategy) and runs in a worker thread via
:func:`asyncio.to_thread`; each network step is bounded by ``timeout_s``.
Passwords are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from ldap3 import BASE, Connection, Server, Tls
from ldap3.core.exceptions import (
    LDAPCertificateError,
    LDAPCommunicationError,
    LDAPException,
    LDAPResponseTimeoutError,
    LDAPStartTLSError,
)
from ldap3.utils.dn import escape_rdn

from .auth import check_display_name
from .config import ServerConfig
from .directory import DirectoryUser
from .errors import ConfigurationError, DirectoryUnavailable, InvalidArgument

log = logging.getLogger(__name__)

USERNAME_PLACEHOLDER = "{username}"
DEFAULT_TIMEOUT_S = 5.0
INVALID_CREDENTIALS = 49  # RFC 4511 §4.1.9
BUSY = 51
UNAVAILABLE = 52
DISPLAY_ATTRIBUTES = ("displayName", "cn")  # first readable, valid one wins
_UNREACHABLE = (
    LDAPCommunicationError,  # socket open/send/receive errors, connection refused, timeouts
    LDAPStartTLSError,  # StartTLS refused, or the TLS handshake / certificate check failed
    LDAPCertificateError,
    LDAPResponseTimeoutError,
    OSError,
)


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What one bind attempt gave: success, the LDAP result code, the display name."""

    ok: bool
    code: int | None = None
    description: str = ""
    display_name: str = ""


class LdapDirectory:
    """A :class:`~hubbub.server.directory.Directory` backed by an LDAP server.

    Each :meth:`authenticate` opens a fresh connection, optionally runs StartTLS,
    does a simple bind as ``user_dn_template`` with ``{username}`` replaced by
    the RFC 4514-escaped canonical username, reads the entry's ``displayName``
    or ``cn`` if the bound user may, and unbinds.

    Args:
        url: ``ldap://host[:port]`` or ``ldaps://host[:port]`` (default ports 389 and 636).
        user_dn_template: DN with one ``{username}`` placeholder, e.g.
            ``uid={username},ou=people,dc=hubbub,dc=test``.
        start_tls: run StartTLS (RFC 4513 §3) before binding; not with ``ldaps://``.
        ca_file: PEM file of CAs to trust for TLS; the system CAs when empty.
            The server certificate is always verified, host name included.
        timeout_s: bound on connecting and on each wait for an answer, seconds.

    Raises:
        ValueError: a malformed URL, a template without ``{username}``,
            StartTLS with ``ldaps://``, a CA file that does not exist, or a
            non-positive timeout.
    """

    def __init__(
        self,
        url: str,
        user_dn_template: str,
        *,
        start_tls: bool = False,
        ca_file: str = "",
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        parts = urlsplit(url.strip())
        if parts.scheme.lower() not in ("ldap", "ldaps") or not parts.hostname:
            raise ValueError(f"LDAP URL must be ldap://host[:port] or ldaps://host[:port]: {url!r}")
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            raise ValueError(f"LDAP URL must have no user, path or query: {url!r}")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"LDAP URL has a bad port: {url!r}") from None
        if user_dn_template.count(USERNAME_PLACEHOLDER) != 1:
            raise ValueError(
                f"LDAP user DN template must contain {USERNAME_PLACEHOLDER} exactly once: "
                f"{user_dn_template!r}"
            )
        self.use_ssl = parts.scheme.lower() == "ldaps"
        if start_tls and self.use_ssl:
            raise ValueError("StartTLS cannot be used with ldaps:// (TLS is already on)")
        if timeout_s <= 0:
            raise ValueError("LDAP timeout must be positive")
        self.url = url.strip()
        self.host = parts.hostname
        self.port = port or (636 if self.use_ssl else 389)
        self.user_dn_template = user_dn_template
        self.start_tls = start_tls
        self.timeout_s = timeout_s
        try:
            self._tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=ca_file or None)
        except LDAPException as exc:
            raise ValueError(f"LDAP CA file {ca_file!r}: {exc}") from None

    @property
    def encrypted(self) -> bool:
        """True if passwords travel over TLS (``ldaps://`` or StartTLS)."""
        return self.use_ssl or self.start_tls

    def user_dn(self, username: str) -> str:
        """The DN to bind as: the template with the RFC 4514-escaped ``username``.

        ``username`` must already be canonical (``usernames.canonical``); the
        escaping (``ldap3.utils.dn.escape_rdn``, RFC 4514 §2.4) is a second line
        of defence against DN injection.
        """
        return self.user_dn_template.replace(USERNAME_PLACEHOLDER, escape_rdn(username))

    async def authenticate(self, username: str, password: str) -> DirectoryUser | None:
        """Check ``password`` with an LDAP simple bind (RFC 4513 §5.1.3) as :meth:`user_dn`.

        Args:
            username: canonical username.
            password: the password; never logged.

        Returns:
            The user, with the entry's ``displayName`` or ``cn`` when readable
            after the bind and valid as a Hubbub display name (else empty), or
            ``None`` for an empty password (RFC 4513 §5.1.2), invalid
            credentials (unknown DN included) or any other refusal.

        Raises:
            DirectoryUnavailable: connection refused or failed, timeout, StartTLS
                or certificate failure, or the server answered busy/unavailable.
        """
        if not password:
            return None
        dn = self.user_dn(username)
        try:
            outcome = await asyncio.to_thread(self._bind, dn, password)
        except _UNREACHABLE as exc:
            log.warning(
                "LDAP directory %s unreachable during login of %r: %s: %s",
                self.url,
                username,
                type(exc).__name__,
                exc,
            )
            raise DirectoryUnavailable(
                "The login directory is unavailable; try again later."
            ) from exc
        except LDAPException as exc:
            log.warning(
                "LDAP login of %r failed with a client error: %s: %s",
                username,
                type(exc).__name__,
                exc,
            )
            return None
        if outcome.ok:
            return DirectoryUser(username, outcome.display_name)
        if outcome.code in (BUSY, UNAVAILABLE):
            log.warning(
                "LDAP directory %s refused the bind of %r: %s", self.url, dn, outcome.description
            )
            raise DirectoryUnavailable("The login directory is unavailable; try again later.")
        if outcome.code != INVALID_CREDENTIALS:
            log.warning("LDAP bind of %r refused: %s (%s)", dn, outcome.description, outcome.code)
        return None

    def _server(self) -> Server:
        # A fresh Server per attempt: ldap3 keeps per-connection state on it.
        return Server(
            self.host,
            port=self.port,
            use_ssl=self.use_ssl,
            tls=self._tls,
            get_info="NO_INFO",
            connect_timeout=self.timeout_s,
        )

    def _bind(self, dn: str, password: str) -> _Outcome:
        """Blocking: open, StartTLS if asked, bind, read the display name, unbind."""
        conn = Connection(
            self._server(),
            user=dn,
            password=password,
            authentication="SIMPLE",
            auto_bind="NONE",
            client_strategy="SYNC",
            read_only=True,
            raise_exceptions=False,
            # ldap3 packs this into SO_RCVTIMEO as a C long: whole seconds only.
            receive_timeout=max(1, math.ceil(self.timeout_s)),
        )
        try:
            conn.open(read_server_info=False)
            # Never bind (send the password) unless TLS is really on when asked for.
            if self.start_tls and not conn.start_tls(read_server_info=False):
                raise LDAPStartTLSError("StartTLS did not complete")
            if not conn.bind(read_server_info=False):
                result = conn.result or {}
                return _Outcome(False, result.get("result"), str(result.get("description", "")))
            return _Outcome(True, display_name=self._display_name(conn, dn))
        finally:
            with contextlib.suppress(LDAPException, OSError):
                conn.unbind()

    def _display_name(self, conn: Connection, dn: str) -> str:
        """The entry's ``displayName`` or ``cn`` if readable and valid, else ``""``."""
        try:
            found = conn.search(
                dn,
                "(objectClass=*)",
                search_scope=BASE,
                attributes=list(DISPLAY_ATTRIBUTES),
                size_limit=1,
                time_limit=max(1, math.ceil(self.timeout_s)),
            )
        except (LDAPException, OSError) as exc:
            log.info("cannot read the LDAP entry %r after bind: %s", dn, type(exc).__name__)
            return ""
        if not found or not conn.response:
            return ""
        attributes = conn.response[0].get("attributes", {})
        for name in DISPLAY_ATTRIBUTES:
            value = attributes.get(name)
            values = value if isinstance(value, list) else [value]
            for candidate in values:
                if not isinstance(candidate, str) or not candidate.strip():
                    continue
                try:
                    return check_display_name(candidate)
                except InvalidArgument:
                    continue
        return ""


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ldap_directory(config: ServerConfig) -> LdapDirectory | None:
    """The LDAP directory configured by ``--ldap-*`` flags, or ``None`` when ``ldap_url`` is empty.

    Logs a warning when passwords would travel in clear to a non-loopback server.

    Raises:
        ConfigurationError: inconsistent or malformed LDAP settings (``--ldap-only`` or
            ``--ldap-start-tls`` without ``--ldap-url``, no ``--ldap-user-dn``, a
            bad URL, template or CA file); the message names the problem.
    """
    if not config.ldap_url:
        if config.ldap_only or config.ldap_user_dn or config.ldap_start_tls or config.ldap_ca_file:
            raise ConfigurationError("--ldap-only, --ldap-user-dn and TLS options need --ldap-url")
        return None
    if not config.ldap_user_dn:
        raise ConfigurationError(
            "--ldap-url needs --ldap-user-dn (e.g. uid={username},ou=people,...)"
        )
    try:
        directory = LdapDirectory(
            config.ldap_url,
            config.ldap_user_dn,
            start_tls=config.ldap_start_tls,
            ca_file=config.ldap_ca_file,
            timeout_s=config.ldap_timeout_s,
        )
    except ValueError as exc:
        raise ConfigurationError(f"LDAP settings: {exc}") from None
    if not directory.encrypted and not _is_loopback(directory.host):
        log.warning(
            "LDAP login to %s sends passwords in clear; use ldaps:// or --ldap-start-tls",
            directory.url,
        )
    return directory
