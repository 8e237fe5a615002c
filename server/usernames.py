"""Username rules: RFC 8265 (PRECIS) UsernameCaseMapped plus Hubbub's charset.

A valid username, after the PRECIS profile maps and normalises it (width
mapping, case folding, NFC), is 3-32 characters of Unicode letters, digits,
``_``, ``.`` or ``-``. Names used by the server itself are reserved, and so are
their look-alikes. Two names look alike when their UTS #39 skeletons are equal
(:func:`skeleton`); the store refuses a new name whose skeleton is taken.
"""

from __future__ import annotations

import functools
import unicodedata

import precis_i18n
from confusable_homoglyphs.confusables import confusables_data  # type: ignore[import-untyped]

from .errors import GroupNotFound, HubbubError, InvalidUsername, ReservedUsername

MIN_LENGTH = 3
MAX_LENGTH = 32
RESERVED = frozenset({"echobot", "server", "system", "admin", "root", "hubbub", "everyone"})
_PROFILE = precis_i18n.get_profile("UsernameCaseMapped")
_EXTRA = frozenset("_.-")
_FIELD = "username"
_LRM = "\u200e"  # the library keeps the left-to-right marks of confusables.txt's comments


def _prototypes() -> dict[str, str]:
    """confusables.txt as ``{source character: prototype}`` (UTS #39 §4 "confusables").

    The ``confusable-homoglyphs`` library stores each line ``source → prototype``
    in both directions. A source maps to exactly one prototype, so an entry with
    several look-alikes, or a sequence, is a prototype; a character with a single
    look-alike maps to it, except in a lone pair (both have one look-alike), where
    the higher code point maps to the lower so the pair still shares one skeleton.
    """
    table = {
        key.replace(_LRM, ""): [e["c"].replace(_LRM, "") for e in entries]
        for key, entries in confusables_data.items()
    }
    return {
        char: others[0]
        for char, others in table.items()
        if len(char) == 1
        and len(others) == 1
        and not (len(table.get(others[0], ())) == 1 and len(others[0]) == 1 and others[0] > char)
    }


_PROTOTYPES = _prototypes()


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


@functools.lru_cache(maxsize=65536)
def skeleton(name: str) -> str:
    """The UTS #39 §4 skeleton of ``name``, case-folded: equal skeletons look alike.

    ``skeleton(X) = NFD(map every character of NFD(X) to its confusables.txt
    prototype)`` (https://www.unicode.org/reports/tr39/#Confusable_Detection),
    with the data of the ``confusable-homoglyphs`` library; the mapping is repeated
    until nothing changes, then case-folded, because Hubbub names are compared
    case-insensitively (``0`` maps to ``O``, which must match ``o``). Examples:
    ``skeleton("аlice") == skeleton("alice")`` (Cyrillic а), ``skeleton("b0b") ==
    skeleton("bob")``, ``skeleton("rnary") == skeleton("mary")``.
    """
    text = unicodedata.normalize("NFD", name)
    for _ in range(4):  # prototypes are final; a second pass only settles rare sequences
        mapped = unicodedata.normalize("NFD", "".join(_PROTOTYPES.get(c, c) for c in text))
        if mapped == text:
            break
        text = mapped
    return unicodedata.normalize("NFD", text.casefold())


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
        ReservedUsername: the name belongs to the server (``echobot``, ``admin``, …)
            or looks like one (same :func:`skeleton`, e.g. ``есhobot`` in Cyrillic).
    """
    name = canonical(raw)
    if is_reserved(name):
        raise ReservedUsername.for_field(_FIELD, f"'{name}' is reserved")
    return name


def is_reserved(name: str) -> bool:
    """True if the canonical ``name`` is reserved or looks like a reserved name (same
    :func:`skeleton`)."""
    return name in RESERVED or skeleton(name) in _RESERVED_SKELETONS


_RESERVED_SKELETONS = frozenset(skeleton(n) for n in RESERVED)
