"""Username rules: RFC 8265 (PRECIS) UsernameCaseMapped plus Hubbub's charset.

A valid username, after the PRECIS profile maps and normalises it (width
mapping, case folding, NFC), is 3-32 characters of Unicode letters, digits,
``_``, ``.`` or ``-``. Names used by the server itself are reserved.
"""

from __future__ import annotations

import functools

import precis_i18n

from .errors import GroupNotFound, HubbubError, InvalidUsername, ReservedUsername

MIN_LENGTH = 3
MAX_LENGTH = 32
RESERVED = frozenset({"echobot", "server", "system", "admin", "root", "hubbub", "everyone"})
_PROFILE = precis_i18n.get_profile("UsernameCaseMapped")
_EXTRA = frozenset("_.-")
_FIELD = "username"


@functools.lru_cache(maxsize=65536)
def canonical(raw: str) -> str:
    """Return the canonical form of ``raw``.

    Raises:
        InvalidUsername: wrong length, or a character other than letters,
            digits, ``_ . -`` (spaces, symbols, zero-width and control
            characters included), or refused by RFC 8265.
    """
    if not raw:
        raise InvalidUsername.for_field(_FIELD, "a username is required")
    try:
        name = _PROFILE.enforce(raw)
    except UnicodeError:
        raise InvalidUsername.for_field(
            _FIELD, "only letters, digits, '_', '.' and '-' are allowed"
        ) from None
    if not all(ch.isalnum() or ch in _EXTRA for ch in name):
        raise InvalidUsername.for_field(
            _FIELD, "only letters, digits, '_', '.' and '-' are allowed"
        )
    if not MIN_LENGTH <= len(name) <= MAX_LENGTH:
        raise InvalidUsername.for_field(
            _FIELD, f"must be {MIN_LENGTH} to {MAX_LENGTH} characters long"
        )
    return name


def group_reference(raw: str) -> str:
    """Canonical name of a group referred to as ``team`` or ``#team`` (group names follow
    the username rules in their own namespace).

    Raises:
        GroupNotFound: the name breaks the rules, so no such group can exist.
    """
    bare = raw.removeprefix("#")
    try:
        return canonical(bare)
    except HubbubError:
        raise GroupNotFound(f"The group '#{bare}' does not exist.") from None


def canonical_for_registration(raw: str) -> str:
    """Like :func:`canonical`, and also refuse reserved names.

    Raises:
        InvalidUsername: see :func:`canonical`.
        ReservedUsername: the name belongs to the server (``echobot``, ``admin``, …).
    """
    name = canonical(raw)
    if name in RESERVED:
        raise ReservedUsername.for_field(_FIELD, f"'{name}' is reserved")
    return name
