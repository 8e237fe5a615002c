"""Unit tests of the safe rendering of network strings and of input completion."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from rich.console import Console
from rich.text import Text

from hubbub.client.tui import text as tx
from hubbub.client.tui.widgets import complete

pytestmark = pytest.mark.timeout(10)

T0 = datetime(2026, 5, 4, 14, 2, tzinfo=UTC)
TIME_ROW = re.compile(r"\d\d:\d\d ")


def test_visible_shows_controls_separators_and_bidi() -> None:
    """ESC, CR, newline, DEL, C1, U+2028/2029 and bidi overrides are shown, not obeyed."""
    shown = tx.visible("a\x1b[31mb\rc\nd\x7fe\x85f\u2028g\u2029h\u202ei\u200bj\tk")
    assert shown == ("a^[[31mb^Mc^Jd\\x7fe\\x85f<U+2028>g<U+2029>h<U+202E>i<U+200B>j    k")
    assert not any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in shown)


def test_body_newlines_become_indented_continuation_rows() -> None:
    """Only the first row of a message has the time; later lines are indented, so a body
    cannot start a row that looks like another message."""
    console = Console(width=60)
    content = tx.message_content("bob", "bold", "hi\n14:03 alice: I owe bob 100€\r\n")
    rows = tx.plain_rows(tx.wrap_rows("14:02", content, 60, console))
    assert rows[0].startswith("14:02 bob: hi")
    assert rows[1] == " " * tx.TIME_WIDTH + "14:03 alice: I owe bob 100€"
    assert all(not TIME_ROW.match(row) for row in rows[1:])


def test_wrapped_rows_are_indented_too() -> None:
    """A long line that wraps continues indented: a forged time at the wrap point stays
    inside the body column."""
    console = Console(width=40)
    body = "x" * 24 + " 14:09 alice: forged line here"
    rows = tx.plain_rows(tx.wrap_rows("14:02", tx.message_content("bob", "", body), 40, console))
    assert len(rows) > 1
    assert [bool(TIME_ROW.match(r)) for r in rows] == [True] + [False] * (len(rows) - 1)
    assert all(len(r) <= 40 for r in rows)


def test_content_is_text_not_markup() -> None:
    """Markup in a body stays literal text without style."""
    content = tx.message_content("bob", "bold", "[red]not red[/red] [link=x]y[/link]")
    assert isinstance(content, Text)
    assert "[red]not red[/red]" in content.plain
    body_spans = [s for s in content.spans if s.start >= len("bob: ")]
    assert body_spans == []


def test_user_label_puts_the_username_first() -> None:
    """A display name is shown after the username, never instead of it."""
    assert tx.user_label("mallory", "alice") == "mallory (alice)"
    assert tx.user_label("bob", "Bob") == "bob"
    assert tx.user_label("eve", "x\n12:00 bob") == "eve (x^J12:00 bob)"


def test_day_and_time_labels_use_the_given_zone() -> None:
    """Times and day separators are local to the configured zone."""
    from zoneinfo import ZoneInfo

    tokyo = ZoneInfo("Asia/Tokyo")
    assert tx.clock_time(T0, UTC) == "14:02"
    assert tx.clock_time(T0, tokyo) == "23:02"
    assert tx.day_label(T0, UTC) == "Monday 4 May 2026"


def test_completion_of_commands_names_and_groups() -> None:
    """Tab completes a command at the start, @names and #groups as the last word."""
    names, groups = ["alice", "bob", "Bobby"], ["team"]
    assert complete("!cr", names, groups) == "!create "
    assert complete("@bo", names, groups) == "@bob "
    assert complete("@BOBB", names, groups) == "@Bobby "
    assert complete("!add #te", names, groups) == "!add #team "
    assert complete("!create team @al", names, groups) == "!create team @alice "
    assert complete("hello", names, groups) is None
    assert complete("@bob ", names, groups) is None
    assert complete("@zz", names, groups) is None
