"""The login-directory interface: an external source that checks passwords.

:class:`~hubbub.server.auth.AuthService` asks a :class:`Directory` to check a
password instead of the local argon2id hash (docs/protocol.md §Authentication,
"Optional LDAP login").
The LDAP implementation is :mod:`hubbub.server.directory_ldap`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class DirectoryUser:
    """A user the directory has just authenticated.

    Attributes:
        username: the canonical Hubbub username that was checked
            (RFC 8265 UsernameCaseMapped, as given to :meth:`Directory.authenticate`).
        display_name: the name the directory shows for the user (LDAP ``displayName``
            or ``cn``); empty when the directory did not say.
    """

    username: str
    display_name: str = ""


class Directory(Protocol):
    """Something that can check a username and password, such as an LDAP server."""

    async def authenticate(self, username: str, password: str) -> DirectoryUser | None:
        """Check ``password`` for the canonical ``username``.

        Args:
            username: canonical username (already passed ``usernames.canonical``).
            password: the password as the client sent it; never logged.

        Returns:
            The user on success; ``None`` for a wrong password, an unknown user,
            an empty password or any refusal by the directory.

        Raises:
            DirectoryUnavailable: the directory could not be reached or did not
                answer in time (nothing was learnt about the credentials).
        """
        ...
