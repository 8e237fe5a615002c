"""Username rules (RFC 8265 UsernameCaseMapped + Hubbub charset), without a network."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubbub.server import usernames
from hubbub.server.errors import InvalidUsername, ReservedUsername


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("Alice", "alice"),
        ("ALICE", "alice"),
        ("Ａｌｉｃｅ", "alice"),
        ("Jean-Luc.P_1", "jean-luc.p_1"),
    ],
)
def test_case_and_width_are_folded(raw: str, canonical: str) -> None:
    """Case and full-width forms map to one canonical name."""
    assert usernames.canonical(raw) == canonical


@pytest.mark.parametrize(
    "raw",
    ["ab", "a" * 33, "a b", "a!b", "a@b", "a#b", "a$b", "a%b", "a^b", "a&b", "a*b", "a\u200bb"],
)
def test_disallowed_names(raw: str) -> None:
    """Too short/long names and any character outside letters, digits, _ . - are refused."""
    with pytest.raises(InvalidUsername) as info:
        usernames.canonical(raw)
    assert info.value.violations[0].field == "username"


def test_reserved_names_only_refused_for_registration() -> None:
    """Reserved names are valid names (echobot exists) but cannot be registered."""
    assert usernames.canonical("EchoBot") == "echobot"
    with pytest.raises(ReservedUsername):
        usernames.canonical_for_registration("EchoBot")


@given(st.text(min_size=0, max_size=40))
def test_canonical_is_idempotent_and_within_rules(raw: str) -> None:
    """Any accepted name is 3-32 allowed characters and canonicalising it again is a no-op."""
    try:
        name = usernames.canonical(raw)
    except InvalidUsername:
        return
    assert 3 <= len(name) <= 32
    assert all(ch.isalnum() or ch in "_.-" for ch in name)
    assert usernames.canonical(name) == name
