"""Where the client connects: one or more server addresses, plaintext or TLS.

A `ServerTarget` is parsed from what the person typed (`--server`, repeatable or a
comma list; `HUBBUB_SERVER`; a saved login) and normalised, so that a saved session
token can be bound to the exact target it came from and never sent anywhere else
(OWASP Session Management Cheat Sheet: the session ID is a credential and must only
travel to the site that issued it, over TLS).

Accepted address forms (the port defaults to 50051):

- `host:port`, `host`, `[v6-address]:port`, `ipv4:1.2.3.4:5` (grpc's own scheme prefix
  is dropped, its `ipv4:`/`ipv6:`/`dns:` name is not needed);
- `grpcs://host:port` or `https://host:port` (TLS); `grpc://` or `http://` (plaintext).

A DNS name with several addresses is left to grpc's DNS resolver, which tries them in
turn.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final

DEFAULT_PORT: Final = 50051

_TLS_SCHEMES: Final = ("grpcs://", "https://")
_PLAIN_SCHEMES: Final = ("grpc://", "http://")
_GRPC_PREFIXES: Final = ("dns:///", "dns:", "ipv4:", "ipv6:")


class TargetError(ValueError):
    """An address that cannot be understood; `str(exc)` is one line for a person."""


@dataclass(frozen=True)
class ServerTarget:
    """One or more Hubbub nodes and how to talk to them.

    `addresses` are normalised "host:port" strings (host lower-case, IPv6 in brackets),
    in the order to try; `tls` says whether to use TLS; `ca_file` is a PEM file of
    trusted roots ("" for the system roots; only meaningful with TLS).
    """

    addresses: tuple[str, ...]
    tls: bool = False
    ca_file: str = ""

    def __post_init__(self) -> None:
        if not self.addresses:
            raise TargetError("No server address given.")

    @property
    def key(self) -> str:
        """The canonical text of the target: `[grpcs://]host:port[,host:port…]`.

        Saved logins store it; `parse_target(key)` gives the target back.
        """
        joined = ",".join(self.addresses)
        return f"grpcs://{joined}" if self.tls else joined

    def __str__(self) -> str:
        return self.key

    def is_loopback(self) -> bool:
        """True if every address is this machine (127.0.0.0/8, ::1, `localhost`)."""
        return all(_is_loopback_host(_split_host_port(a)[0]) for a in self.addresses)

    def may_use_session_of(self, saved: ServerTarget) -> bool:
        """True if a token saved for `saved` may be sent to this target.

        Same transport (TLS or not) and every address of this target is one of the
        saved target's addresses (a subset of a cluster's nodes is the same service).
        """
        return self.tls == saved.tls and set(self.addresses) <= set(saved.addresses)

    def with_tls(self, tls: bool, ca_file: str = "") -> ServerTarget:
        """This target with TLS switched on (never off) and the CA file replaced if given."""
        return ServerTarget(
            self.addresses, self.tls or tls or bool(ca_file), ca_file or self.ca_file
        )


def _is_loopback_host(host: str) -> bool:
    bare = host.strip("[]").lower().rstrip(".")
    if bare == "localhost" or bare.endswith(".localhost"):  # RFC 6761 section 6.3
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False


def _split_host_port(address: str) -> tuple[str, int]:
    """("host", port) of a normalised or typed address; the port defaults to 50051."""
    text = address.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise TargetError(f"Bad server address {address!r}: missing ']'.")
        host, rest = text[: end + 1], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise TargetError(f"Bad server address {address!r}.")
        port_text = rest[1:]
    elif text.count(":") > 1:  # a bare IPv6 address without a port
        host, port_text = f"[{text}]", ""
    else:
        host, _, port_text = text.partition(":")
    if not host or host == "[]":
        raise TargetError(f"Bad server address {address!r}: no host.")
    if not port_text:
        return host.lower(), DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise TargetError(f"Bad server address {address!r}: the port must be 1 to 65535.")
    return host.lower(), int(port_text)


def _normalise(address: str) -> str:
    host, port = _split_host_port(address)
    return f"{host.rstrip('.')}:{port}"


def parse_target(specs: str | list[str], *, tls: bool = False, ca_file: str = "") -> ServerTarget:
    """Parse one or more `--server` values (each may be a comma list) into a ServerTarget.

    A `grpcs://`/`https://` scheme, `tls` or a `ca_file` turn TLS on. Mixing TLS and
    plaintext schemes in one target raises TargetError, as does an empty or bad address.
    """
    items = [specs] if isinstance(specs, str) else list(specs)
    addresses: list[str] = []
    schemes: set[bool] = set()
    for item in items:
        for part in item.split(","):
            text = part.strip()
            if not text:
                continue
            lowered = text.lower()
            if lowered.startswith(_TLS_SCHEMES):
                schemes.add(True)
                text = text.split("://", 1)[1]
            elif lowered.startswith(_PLAIN_SCHEMES):
                schemes.add(False)
                text = text.split("://", 1)[1]
            else:
                for prefix in _GRPC_PREFIXES:
                    if lowered.startswith(prefix):
                        text = text[len(prefix) :]
                        break
            text = text.rstrip("/")
            for sub in text.split(","):
                if sub.strip():
                    normal = _normalise(sub)
                    if normal not in addresses:
                        addresses.append(normal)
    if len(schemes) > 1:
        raise TargetError("Use one transport for every server: all grpcs:// or none.")
    if not addresses:
        raise TargetError("No server address given.")
    use_tls = tls or bool(ca_file) or schemes == {True}
    if schemes == {False} and (tls or ca_file):
        raise TargetError("A grpc:// or http:// address cannot be used with --tls or --ca-file.")
    return ServerTarget(tuple(addresses), use_tls, ca_file)
