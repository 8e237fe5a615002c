"""Password guessing (issue 8, holes 2 and 3): reserved attempts, per-address keys, no lock-out.

Each test drives a real in-process server with real gRPC calls; argon2
verifications are counted by wrapping the server's hashing object.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, cast

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from hubbub.v1 import messenger_pb2 as pb
from hubbub.v1 import messenger_pb2_grpc as pb_grpc
from tests.integration.conftest import PASSWORD, Node, auth, register_login

# The async stub class exists only in the .pyi: quoted, so nothing looks it up at run time.
StubFrom = Callable[[Node, str], Awaitable["pb_grpc.MessengerServiceAsyncStub"]]
BUDGET = 5  # ThrottlePolicy.login_per_user_address / password_check_per_session


class VerifyCounter:
    """Wraps ``hashing.verify`` of a server: counts the argon2 verifications started."""

    def __init__(self, node: Node, reached: int = BUDGET) -> None:
        self.calls = 0
        self.reached = asyncio.Event()
        self._target = reached
        hashing = node.server.auth.hashing
        original = hashing.verify

        async def counting(*args: Any, **kwargs: Any) -> bool:
            self.calls += 1
            if self.calls >= self._target:
                self.reached.set()
            return await original(*args, **kwargs)

        hashing.verify = counting  # type: ignore[method-assign]


def reason(error: grpc.aio.AioRpcError) -> str:
    """The google.rpc.ErrorInfo reason of a refused call ("" if none)."""
    metadata = cast("Iterable[tuple[str, Any]]", error.trailing_metadata() or ())
    for key, value in metadata:
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    found: str = info.reason
                    return found
    return ""


async def outcome(call: Awaitable[Any]) -> grpc.StatusCode:
    """The status code a unary call ends with."""
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def refused(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    """The error of a call that must fail."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


@pytest.mark.timeout(120)
async def test_parallel_wrong_guesses_evaluate_at_most_the_budget(node: Node) -> None:
    """60 parallel wrong logins run at most 5 argon2 checks; the right password is refused then."""
    await node.stub.Register(pb.RegisterRequest(username="alice", password=PASSWORD))
    counter = VerifyCounter(node)
    burst = [
        asyncio.create_task(
            outcome(node.stub.Login(pb.LoginRequest(username="alice", password=f"guess-{i:04}")))
        )
        for i in range(60)
    ]
    await asyncio.wait_for(counter.reached.wait(), 60)
    err = await refused(node.stub.Login(pb.LoginRequest(username="alice", password=PASSWORD)))
    codes = await asyncio.gather(*burst)
    print(f"argon2 verifications for 60 parallel guesses: {counter.calls}")
    assert counter.calls <= BUDGET
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 60 - BUDGET
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reason(err) == "LOGIN_THROTTLED"


@pytest.mark.timeout(120)
async def test_update_profile_current_password_guesses_are_throttled(node: Node) -> None:
    """A stolen token gets at most 5 current-password checks, even the right one is refused then."""
    token = await register_login(node, "alice")
    counter = VerifyCounter(node)

    def change(current: str) -> Awaitable[Any]:
        request = pb.UpdateProfileRequest(current_password=current, new_password="new password 1")
        return node.stub.UpdateProfile(request, metadata=auth(token))

    burst = [asyncio.create_task(outcome(change(f"guess-{i:04}"))) for i in range(20)]
    await asyncio.wait_for(counter.reached.wait(), 60)
    err = await refused(change(PASSWORD))
    codes = await asyncio.gather(*burst)
    assert counter.calls <= BUDGET
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 20 - BUDGET
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reason(err) == "PASSWORD_CHECK_THROTTLED"


@pytest.mark.timeout(120)
async def test_attacker_on_another_address_cannot_lock_the_owner_out(
    node: Node, stub_from: StubFrom
) -> None:
    """Guesses from 127.0.0.2 are throttled there; the owner on 127.0.0.3 still logs in."""
    await node.stub.Register(pb.RegisterRequest(username="alice", password=PASSWORD))
    attacker = await stub_from(node, "127.0.0.2")
    owner = await stub_from(node, "127.0.0.3")
    codes = [
        await outcome(attacker.Login(pb.LoginRequest(username="alice", password=f"guess-{i}")))
        for i in range(8)
    ]
    assert codes[:BUDGET] == [grpc.StatusCode.UNAUTHENTICATED] * BUDGET
    assert set(codes[BUDGET:]) == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    reply = await owner.Login(pb.LoginRequest(username="alice", password=PASSWORD))
    assert reply.user.username == "alice"
    err = await refused(attacker.Login(pb.LoginRequest(username="alice", password=PASSWORD)))
    assert reason(err) == "LOGIN_THROTTLED"


@pytest.mark.timeout(180)
async def test_guesses_from_many_addresses_slow_new_addresses_but_not_the_owners(
    node: Node, stub_from: StubFrom
) -> None:
    """Past the per-name ceiling (20), the owner's known address logs in; a new one is slowed."""
    await node.stub.Register(pb.RegisterRequest(username="alice", password=PASSWORD))
    owner = await stub_from(node, "127.0.0.3")
    await owner.Login(pb.LoginRequest(username="alice", password=PASSWORD))  # now known
    bots = [await stub_from(node, f"127.0.1.{i}") for i in range(1, 7)]
    codes = await asyncio.gather(
        *(
            outcome(bot.Login(pb.LoginRequest(username="alice", password=f"guess-{i}")))
            for bot in bots
            for i in range(BUDGET)
        )
    )
    # 19 fill the ceiling (the owner's login was the 20th attempt), 1 gets the trickle
    assert codes.count(grpc.StatusCode.UNAUTHENTICATED) == 20
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 6 * BUDGET - 20
    newcomer = await stub_from(node, "127.0.0.99")
    err = await refused(newcomer.Login(pb.LoginRequest(username="alice", password=PASSWORD)))
    assert reason(err) == "LOGIN_THROTTLED"
    reply = await owner.Login(pb.LoginRequest(username="alice", password=PASSWORD))
    assert reply.user.username == "alice"


@pytest.mark.timeout(60)
async def test_one_address_spraying_many_names_is_throttled(node_factory: Any) -> None:
    """One address is refused after --login-address-limit attempts over all names."""
    node = await node_factory(login_address_limit="12 per 15 minutes")
    codes = [
        await outcome(node.stub.Login(pb.LoginRequest(username=f"user{i}", password=PASSWORD)))
        for i in range(14)
    ]
    assert codes[:12] == [grpc.StatusCode.UNAUTHENTICATED] * 12
    assert codes[12:] == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 2


@pytest.mark.timeout(120)
async def test_thief_guesses_cannot_stop_the_owner_changing_the_password(node: Node) -> None:
    """5 wrong current passwords on a stolen session leave the owner's session its own budget."""
    thief_token = await register_login(node, "alice")
    owner = await node.stub.Login(pb.LoginRequest(username="alice", password=PASSWORD))

    def change(token: str, current: str) -> Awaitable[Any]:
        request = pb.UpdateProfileRequest(current_password=current, new_password="new password 1")
        return node.stub.UpdateProfile(request, metadata=auth(token))

    codes = [await outcome(change(thief_token, f"guess-{i}")) for i in range(BUDGET + 1)]
    assert codes == [grpc.StatusCode.UNAUTHENTICATED] * BUDGET + [
        grpc.StatusCode.RESOURCE_EXHAUSTED
    ]
    await change(owner.token, PASSWORD)  # the owner's own budget is untouched
    err = await refused(change(thief_token, "new password 1"))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED  # the change revoked the thief
    reply = await node.stub.Login(pb.LoginRequest(username="alice", password="new password 1"))
    assert reply.user.username == "alice"


@pytest.mark.timeout(60)
async def test_ipv6_client_is_keyed_by_its_slash_64(node_factory: Any) -> None:
    """A client over IPv6 ([::1]) is throttled under its /64, not the shared "unknown" key."""
    node = await node_factory(host="[::1]")
    throttle = node.server.auth.throttle
    keys: list[str] = []
    original = throttle.login_attempt

    async def recording(username: str, address: str) -> None:
        keys.append(address)
        await original(username, address)

    throttle.login_attempt = recording
    async with grpc.aio.insecure_channel(f"[::1]:{node.server.port}") as channel:
        stub = pb_grpc.MessengerServiceStub(channel)
        code = await outcome(stub.Login(pb.LoginRequest(username="alice", password=PASSWORD)))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert keys == ["::/64"]
