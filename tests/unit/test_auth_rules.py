"""Login throttling and display-name rules, without a network."""

from __future__ import annotations

import pytest

from hubbub.server.auth import LoginThrottle, check_display_name
from hubbub.server.errors import InvalidArgument, LoginThrottled


def test_throttle_allows_five_failures_then_locks_exponentially() -> None:
    """Five failures are free; then lock-outs of 1 s, 2 s, 4 s … capped at max_s."""
    throttle = LoginThrottle(free_failures=5, base_s=1.0, max_s=3.0)
    for _ in range(4):
        throttle.failed("alice", 100.0)
        throttle.check("alice", 100.0)
    throttle.failed("alice", 100.0)
    with pytest.raises(LoginThrottled):
        throttle.check("alice", 100.5)
    throttle.check("alice", 101.0)
    throttle.failed("alice", 101.0)
    with pytest.raises(LoginThrottled) as info:
        throttle.check("alice", 102.5)
    assert info.value.retry_after_s == pytest.approx(0.5)
    for _ in range(10):
        throttle.failed("alice", 200.0)
    throttle.check("alice", 203.0)  # capped at 3 s
    throttle.check("bob", 200.0)  # other names are not affected


def test_success_resets_the_throttle() -> None:
    """A successful login forgets earlier failures."""
    throttle = LoginThrottle(free_failures=1)
    throttle.failed("alice", 0.0)
    throttle.succeeded("alice")
    throttle.check("alice", 0.0)


def test_display_name_rules() -> None:
    """Display names are trimmed, at most 64 characters, without control characters."""
    assert check_display_name("  Alice A.  ") == "Alice A."
    with pytest.raises(InvalidArgument):
        check_display_name("x" * 65)
    with pytest.raises(InvalidArgument):
        check_display_name("bell\x07")
    with pytest.raises(InvalidArgument):
        check_display_name("zero\u200bwidth")
