"""Throttling policy, the argon2 priority gate and display-name rules, without a network."""

from __future__ import annotations

import asyncio
import time

import pytest

from hubbub.server.auth import check_display_name
from hubbub.server.errors import (
    CurrentPasswordThrottled,
    InvalidArgument,
    LoginThrottled,
    RegistrationThrottled,
)
from hubbub.server.passwords import Priority, PriorityGate
from hubbub.server.throttle import Throttle, ThrottlePolicy, client_address


def test_client_address_is_the_host_and_an_ipv6_slash_64() -> None:
    """gRPC peers (IPv6 percent-encoded as grpcio reports them) become IPv4 host, IPv6 /64, etc."""
    assert client_address("ipv4:203.0.113.9:5555") == "203.0.113.9"
    assert client_address("ipv6:%5B2001:db8:1:2:3:4:5:6%5D:443") == "2001:db8:1:2::/64"
    assert client_address("ipv6:%5B2001:db8:1:2:ffff::1%5D:443") == "2001:db8:1:2::/64"
    assert client_address("ipv6:%5B2001:db8:1::5%5D:40000") == "2001:db8:1::/64"
    assert client_address("ipv6:%5B::ffff:10.0.0.1%5D:1") == "10.0.0.1"
    assert client_address("ipv6:%5B::1%5D:48204") == "::/64"
    assert client_address("ipv6:%5Bfe80::1%25eth0%5D:48204") == "fe80::/64"
    assert client_address("ipv6:[2001:db8:1:2:3:4:5:6]:443") == "2001:db8:1:2::/64"
    assert client_address("unix:/run/hubbub.sock") == "unix"
    assert client_address("") == client_address("ipv4:garbage") == "unknown"


async def attempts(throttle: Throttle, name: str, address: str, n: int) -> list[bool]:
    """Reserve ``n`` login attempts; True for each one let through."""
    result = []
    for _ in range(n):
        try:
            await throttle.login_attempt(name, address)
        except LoginThrottled:
            result.append(False)
        else:
            result.append(True)
    return result


@pytest.mark.timeout(10)
async def test_five_attempts_per_name_and_address_then_a_retry_delay() -> None:
    """The 6th attempt on one name from one address is refused with a delay; others are not."""
    throttle = Throttle()
    assert await attempts(throttle, "alice", "10.0.0.1", 6) == [True] * 5 + [False]
    with pytest.raises(LoginThrottled) as info:
        await throttle.login_attempt("alice", "10.0.0.1")
    assert info.value.retry_after_s is not None and 899 < info.value.retry_after_s <= 900
    assert await attempts(throttle, "alice", "10.0.0.2", 1) == [True]
    assert await attempts(throttle, "bob", "10.0.0.1", 1) == [True]


@pytest.mark.timeout(10)
async def test_success_clears_the_name_address_budget() -> None:
    """A correct password gives the owner's address its whole budget back."""
    throttle = Throttle()
    assert await attempts(throttle, "alice", "10.0.0.1", 5) == [True] * 5
    await throttle.login_succeeded("alice", "10.0.0.1")
    assert await attempts(throttle, "alice", "10.0.0.1", 6) == [True] * 5 + [False]


@pytest.mark.timeout(10)
async def test_one_address_spraying_many_names_is_limited() -> None:
    """The per-address limit counts attempts over all names."""
    throttle = Throttle(ThrottlePolicy(login_per_address="3 per minute"))
    let_through = [await attempts(throttle, f"user{i}", "10.0.0.1", 1) for i in range(5)]
    assert let_through == [[True]] * 3 + [[False]] * 2
    assert await attempts(throttle, "user9", "10.0.0.2", 1) == [True]


@pytest.mark.timeout(10)
async def test_ceiling_slows_unknown_addresses_but_never_the_owners_known_address() -> None:
    """Past the per-name ceiling unknown addresses share a trickle; a known one is unaffected."""
    throttle = Throttle(ThrottlePolicy(login_per_user="10 per minute"))
    assert await attempts(throttle, "alice", "192.0.2.1", 1) == [True]  # the owner
    await throttle.login_succeeded("alice", "192.0.2.1")
    botnet = [await attempts(throttle, "alice", f"10.0.0.{i}", 1) for i in range(1, 21)]
    # 9 more fill the ceiling of 10, one gets the trickle (1 per 30 s), the rest wait
    assert botnet == [[True]] * 10 + [[False]] * 10
    assert await attempts(throttle, "alice", "198.51.100.7", 1) == [False]  # a new address
    assert await attempts(throttle, "alice", "192.0.2.1", 6) == [True] * 5 + [False]
    assert await attempts(throttle, "bob", "10.0.0.1", 1) == [True]


@pytest.mark.timeout(10)
async def test_known_address_is_remembered_from_the_last_success_not_the_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A success refreshes the known mark: it lasts a whole window after the LAST success."""
    now = [1_000_000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])  # the clock of limits' MemoryStorage
    policy = ThrottlePolicy(
        login_per_user="1 per hour", login_past_ceiling="1 per hour", known_address_for="1 per day"
    )
    throttle = Throttle(policy)
    await throttle.login_succeeded("alice", "192.0.2.1")  # first success
    now[0] += 20 * 3600
    await throttle.login_succeeded("alice", "192.0.2.1")  # last success, 20 h later
    now[0] += 10 * 3600  # 30 h after the first, 10 h after the last
    assert await attempts(throttle, "alice", "10.0.0.1", 2) == [True, True]  # ceiling + trickle
    assert await attempts(throttle, "alice", "10.0.0.2", 1) == [False]  # unknown: slowed
    assert await attempts(throttle, "alice", "192.0.2.1", 1) == [True]  # still known
    now[0] += 15 * 3600  # 25 h after the last success: forgotten
    assert await attempts(throttle, "alice", "10.0.0.3", 2) == [True, True]
    assert await attempts(throttle, "alice", "192.0.2.1", 1) == [False]


@pytest.mark.timeout(10)
async def test_current_password_checks_are_limited_per_session() -> None:
    """Five current-password checks per session; other sessions keep theirs; success clears."""
    throttle = Throttle()
    for _ in range(5):
        await throttle.password_check("thief-session")
    with pytest.raises(CurrentPasswordThrottled):
        await throttle.password_check("thief-session")
    for _ in range(5):
        await throttle.password_check("owner-session")  # same account, another session
    await throttle.password_check_succeeded("thief-session")
    await throttle.password_check("thief-session")


@pytest.mark.timeout(10)
async def test_registrations_are_limited_per_address() -> None:
    """--register-limit registrations per address, then RegistrationThrottled."""
    throttle = Throttle(ThrottlePolicy(register_per_address="2 per hour"))
    await throttle.registration("10.0.0.1")
    await throttle.registration("10.0.0.1")
    with pytest.raises(RegistrationThrottled) as info:
        await throttle.registration("10.0.0.1")
    assert info.value.retry_after_s is not None and 3599 < info.value.retry_after_s <= 3600
    await throttle.registration("10.0.0.2")


def test_bad_limit_notation_is_refused() -> None:
    """A limit that is not in the limits notation fails validation."""
    ThrottlePolicy().validate()
    with pytest.raises(ValueError):
        ThrottlePolicy(register_per_address="lots").validate()


@pytest.mark.timeout(10)
async def test_gate_serves_verifications_before_hashes_and_keeps_a_slot_for_them() -> None:
    """Waiting VERIFY work goes before waiting HASH work; HASH never takes the last slot."""
    gate = PriorityGate(slots=2, hash_slots=1)
    order: list[str] = []

    async def job(name: str, priority: Priority) -> None:
        await gate.acquire(priority)
        order.append(name)

    await job("hash-1", Priority.HASH)  # takes the one HASH slot
    hash_2 = asyncio.create_task(job("hash-2", Priority.HASH))
    await asyncio.sleep(0)
    assert order == ["hash-1"]  # a slot is free, but not for HASH work
    await job("verify-1", Priority.VERIFY)  # the reserved slot: at once
    verify_2 = asyncio.create_task(job("verify-2", Priority.VERIFY))
    await asyncio.sleep(0)
    gate.release(Priority.VERIFY)  # verify-2 goes before hash-2, which waited longer
    await verify_2
    assert order == ["hash-1", "verify-1", "verify-2"]
    gate.release(Priority.HASH)
    await hash_2
    assert order[-1] == "hash-2"


@pytest.mark.timeout(10)
async def test_a_cancelled_waiter_gives_its_turn_away() -> None:
    """Cancelling a waiting acquire neither leaks a slot nor blocks the next waiter."""
    gate = PriorityGate(slots=1, hash_slots=1)
    await gate.acquire(Priority.HASH)
    cancelled = asyncio.create_task(gate.acquire(Priority.VERIFY))
    waiting = asyncio.create_task(gate.acquire(Priority.HASH))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    gate.release(Priority.HASH)
    await asyncio.wait_for(waiting, 1)
    gate.release(Priority.HASH)
    await asyncio.wait_for(gate.acquire(Priority.VERIFY), 1)


def test_display_name_rules() -> None:
    """Display names are trimmed, at most 64 characters, without control characters."""
    assert check_display_name("  Alice A.  ") == "Alice A."
    with pytest.raises(InvalidArgument):
        check_display_name("x" * 65)
    with pytest.raises(InvalidArgument):
        check_display_name("bell\x07")
    with pytest.raises(InvalidArgument):
        check_display_name("zero\u200bwidth")
