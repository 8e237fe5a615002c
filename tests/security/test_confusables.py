"""Issue 8 hole 9: look-alike usernames (UTS #39 skeletons) are refused at registration."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from hubbub.v1 import messenger_pb2 as pb

from ..integration.conftest import PASSWORD, Node, db_path, node, node_factory

__all__ = ["db_path", "node", "node_factory"]  # fixtures used by name

pytestmark = pytest.mark.timeout(120)


async def register(node: Node, username: str) -> pb.RegisterResponse:
    """Register ``username`` with the test password."""
    reply: pb.RegisterResponse = await node.stub.Register(
        pb.RegisterRequest(username=username, password=PASSWORD)
    )
    return reply


def reason(error: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason in the status details."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    raise AssertionError("no ErrorInfo")


async def refused(node: Node, username: str) -> grpc.aio.AioRpcError:
    """Register ``username`` and return the refusal."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await register(node, username)
    return info.value


async def test_look_alikes_of_an_existing_name_are_refused(node: Node) -> None:
    """After alice registers, Cyrillic/Greek/digit look-alikes get ALREADY_EXISTS
    USERNAME_CONFUSABLE without naming alice; case and width variants are the same name
    (USERNAME_TAKEN); unrelated names still register."""
    await register(node, "alice")
    for look_alike in ("аlice", "αlice", "a1ice", "alіce", "аlіcе"):  # а α 1 і, all Cyrillic
        error = await refused(node, look_alike)
        assert error.code() == grpc.StatusCode.ALREADY_EXISTS, look_alike
        assert reason(error) == "USERNAME_CONFUSABLE", look_alike
        details = error.details() or ""
        assert "too similar to an existing username" in details
        assert "alice" not in details.replace(look_alike, ""), details  # alice is not leaked
    for variant in ("ALICE", "Alice", "ａｌｉｃｅ"):  # case and width map to alice itself
        error = await refused(node, variant)
        assert (error.code(), reason(error)) == (grpc.StatusCode.ALREADY_EXISTS, "USERNAME_TAKEN")
    for unrelated in ("alicia", "bob", "малина", "ελένη"):
        assert (await register(node, unrelated)).user.username == unrelated


async def test_look_alikes_of_reserved_names_are_refused(node: Node) -> None:
    """Look-alikes of reserved names (Cyrillic 'есhobot', 'аdmin', 'r00t') are reserved too."""
    for look_alike in ("есhobot", "аdmin", "r00t", "ech0bot"):
        error = await refused(node, look_alike)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, look_alike
        assert reason(error) == "USERNAME_RESERVED", look_alike


async def test_parallel_look_alike_registrations_only_one_wins(node: Node) -> None:
    """Eight look-alike registrations at once (Latin, Cyrillic, Greek, digits): one wins."""
    names = ["paypal", "раураl", "pаypal", "paypa1", "рaypal", "paураl", "payраl", "pαypαl"]
    outcomes = await asyncio.gather(*(register(node, n) for n in names), return_exceptions=True)
    won = [o for o in outcomes if isinstance(o, pb.RegisterResponse)]
    assert len(won) == 1, outcomes
    lost = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(lost) == 7
    assert all(e.code() == grpc.StatusCode.ALREADY_EXISTS for e in lost)
