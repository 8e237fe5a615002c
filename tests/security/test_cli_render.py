"""Hole 10 (issue 8): no received text (body, sender, display name, group name, server
sentence) can make the CLI print a line that looks like one of its own notices, or
reach the terminal as a control, bidi or line-separator character."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from hubbub.client import render

T0 = datetime(2026, 5, 4, 12, 1, tzinfo=UTC)

#: How the client's own lines start (docs/cli.md §Wording and the notices of render.py).
NOTICE_STARTS = (
    "[",
    "*",
    "✓",
    "Error:",
    "The message was sent",
    "The destination user",
    "There are",
    "Successfully logged in",
    "Cannot",
    "Welcome",
    "History",
    "You ",
    "Group #",
    "Added ",
    "#",
    "Commands:",
    "Enter your login",
)

#: Every code point, surrogates excluded (protobuf strings are valid UTF-8).
ANY_TEXT = st.text(st.characters(exclude_categories=["Cs"]))
#: Text rich in the characters an attacker would use.
NASTY = st.lists(
    st.sampled_from(
        [*"\n\r\t\x1b\x07\x00\x7f\x85\x9b\u2028\u2029\u202a\u202b\u202c\u202d\u202e",
         *"\u2066\u2067\u2068\u2069\u200e\u200f\u061c\x0b\x0c", "[12:01] From admin: ",
         "* bob is online", "The message was sent", "Error: ", "a", " "]
    )
).map("".join)  # fmt: skip

BAD_CATEGORIES = {"Cc", "Cf", "Zl", "Zp"}


def _bad_characters(line: str) -> list[str]:
    return [ch for ch in line if ch != "\t" and unicodedata.category(ch) in BAD_CATEGORIES]


def _check_lines(text: str, first_line_start: str) -> None:
    lines = text.split("\n")
    assert lines[0].startswith(first_line_start)
    for line in lines[1:]:
        assert line.startswith(render.CONTINUATION), line
        assert not line.startswith(NOTICE_STARTS)
    for line in lines:
        assert _bad_characters(line) == [], line


@settings(max_examples=400, deadline=None)
@given(body=st.one_of(ANY_TEXT, NASTY), sender=st.one_of(ANY_TEXT, NASTY))
def test_no_body_or_sender_forges_a_line(body: str, sender: str) -> None:
    """Every line of an incoming message after the first starts with the continuation
    mark, and no line carries a control, format (bidi) or separator character."""
    _check_lines(render.incoming_line(sender, body, T0, UTC), "[12:01] From ")
    _check_lines(render.incoming_line(sender, body, T0, UTC, group=sender), "[12:01] From ")
    _check_lines(render.history_line(sender, body, T0, UTC), "[2026-05-04 12:01] ")


@settings(max_examples=300, deadline=None)
@given(name=st.one_of(ANY_TEXT, NASTY), other=st.one_of(ANY_TEXT, NASTY))
def test_names_and_server_sentences_stay_on_one_line(name: str, other: str) -> None:
    """Display names, usernames, group names and error sentences never break the line."""
    for line in (
        render.presence_line(name, True, other),
        render.user_label(name, other),
        render.group_update_line(name, "created", other, [name, other]),
        render.group_listing(name, [other]),
        render.group_error_line("", "invalid_argument", name, other),
        render.delivered_line(name),
        render.message_sent_to(name),
        render.display_name_changed(name),
        render.shown(other),
    ):
        assert "\n" not in line and "\r" not in line
        assert _bad_characters(line) == []


def test_the_forged_notice_of_the_issue_is_indented() -> None:
    """The body "hi\\n[12:01] From admin: …" prints the second part as a continuation."""
    line = render.incoming_line("eve", "hi\n[12:01] From admin: send me your password", T0, UTC)
    assert line.split("\n") == [
        "[12:01] From eve: hi",
        "  │ [12:01] From admin: send me your password",
    ]


def test_separators_bidi_and_escapes_are_visible() -> None:
    """U+2028/2029 and bidi controls appear as <U+XXXX>, ESC as ^[, CR as ^M."""
    assert render.shown("a\u2028b\u2029c") == "a<U+2028>b<U+2029>c"
    assert render.shown("x\u202ey\u2066z\u200fw\u061c") == "x<U+202E>y<U+2066>z<U+200F>w<U+061C>"
    assert render.shown("\x1b[31mred\rX") == "^[[31mred^MX"
    assert render.shown("one\ntwo") == "one^Jtwo"
    assert render.shown("one\r\ntwo", multiline=True) == "one\n  │ two"
    assert render.presence_line("mallory", True, "Bob\u2028* alice is offline") == (
        "* mallory (Bob<U+2028>* alice is offline) is online"
    )
