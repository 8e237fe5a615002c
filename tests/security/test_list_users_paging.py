"""Issue 8 hole 5: ListUsers pages (AIP-158) instead of failing past ~60,000 accounts."""

from __future__ import annotations

import base64
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest

from hubbub.server.models import to_ms, utc_now
from hubbub.server.store_sqlite import SqliteStore
from hubbub.server.usernames import skeleton
from hubbub.v1 import messenger_pb2 as pb

from ..integration.conftest import Node, auth, db_path, node, node_factory, register_login

__all__ = ["db_path", "node", "node_factory"]  # fixtures used by name

pytestmark = pytest.mark.timeout(120)
ACCOUNTS = 100_000
WIRE_LIMIT = 4 * 1024 * 1024  # grpc's default largest received message
WIDE_NAME = "\U0001f600" * 64  # the longest display name: 64 four-byte characters


def bulk_accounts(database: Path, count: int) -> list[str]:
    """Create ``count`` accounts straight in SQL (no argon2), with the widest display name."""
    SqliteStore(database)._migrate()  # the server's own schema
    names = [f"user{i:06d}" for i in range(count)]
    now = to_ms(utc_now())
    conn = sqlite3.connect(database, isolation_level=None)
    try:
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO users (username, display_name, password_hash, created_ms, skeleton)"
            " VALUES (?, ?, '!', ?, ?)",
            ((n, WIDE_NAME, now, skeleton(n)) for n in names),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    return names


async def list_page(node: Node, token: str, **fields: object) -> pb.ListUsersResponse:
    """One ListUsers call."""
    reply: pb.ListUsersResponse = await node.stub.ListUsers(
        pb.ListUsersRequest(**fields),  # type: ignore[arg-type]
        metadata=auth(token),
    )
    return reply


async def test_hundred_thousand_accounts_page_through_once_each(
    node_factory: Callable[..., Awaitable[Node]], db_path: Path
) -> None:
    """With 100,000 accounts (widest display names) every page stays under 4 MiB, the
    default page is 100, sizes over 1000 are capped, and paging sees every user once, in order."""
    names = bulk_accounts(db_path, ACCOUNTS)
    node = await node_factory()
    token = await register_login(node, "zelda")
    expected = sorted([*names, "echobot", "zelda"])

    first = await list_page(node, token)
    assert len(first.users) == 100 and first.next_page_token
    assert [u.username for u in first.users] == expected[:100]
    capped = await list_page(node, token, page_size=5000)
    assert len(capped.users) == 1000

    started = time.monotonic()
    seen: list[str] = []
    page_token = ""
    pages = 0
    while True:
        reply = await list_page(node, token, page_size=1000, page_token=page_token)
        assert reply.ByteSize() < WIRE_LIMIT
        seen += [u.username for u in reply.users]
        pages += 1
        page_token = reply.next_page_token
        if not page_token:
            break
    elapsed = time.monotonic() - started
    assert seen == expected  # every user once, sorted across pages
    assert pages == len(expected) // 1000 + 1
    print(f"paged {len(seen)} users in {pages} pages in {elapsed:.2f} s")


async def test_online_only_pages_keep_their_filter(node: Node) -> None:
    """online_only pages list only online users (bots included); its token is refused for
    the unfiltered list."""
    tokens = [await register_login(node, f"member{i}") for i in range(5)]
    chats = [node.stub.Chat(None, metadata=auth(t)) for t in tokens[:3]]
    for chat in chats:
        await chat.read()  # Welcome: online now
    seen: list[str] = []
    page_token = ""
    while True:
        reply = await list_page(
            node, tokens[0], online_only=True, page_size=2, page_token=page_token
        )
        assert len(reply.users) <= 2
        seen += [u.username for u in reply.users]
        page_token = reply.next_page_token
        if not page_token:
            break
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await list_page(node, tokens[0], page_size=2, page_token=page_token)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "other filters" in (info.value.details() or "")
    assert seen == ["echobot", "member0", "member1", "member2"]
    for chat in chats:
        chat.cancel()


def _flip(token: str) -> str:
    middle = len(token) // 2
    return token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]


async def test_bad_page_tokens_and_sizes_are_invalid_argument_with_a_sentence(node: Node) -> None:
    """Garbage, edited, truncated, foreign and huge-number tokens and a negative page size
    get INVALID_ARGUMENT with a human sentence, never a Python exception text."""
    token = await register_login(node, "alice")
    for name in ("bob", "carol", "dave"):
        await register_login(node, name)
    good = (await list_page(node, token, page_size=2)).next_page_token
    assert good
    bad_tokens = [
        "!!!not base64!!!",
        "garbage",
        base64.urlsafe_b64encode(b"\x00\xff" * 40).decode(),
        good[:-3],
        _flip(good),
        base64.urlsafe_b64encode(b"h1:9223372036854775808").decode(),  # a history-style token
        str(2**63),
        "x" * 5000,
    ]
    for bad in bad_tokens:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await list_page(node, token, page_size=2, page_token=bad)
        details = info.value.details() or ""
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (bad, details)
        assert details.startswith("page_token: "), details
        for python in ("Error", "Traceback", "Exception", "codec", "decode"):
            assert python not in details, details
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await list_page(node, token, page_size=-1)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (info.value.details() or "") == "page_size: must not be negative"
    rest = await list_page(node, token, page_size=2, page_token=good)
    assert [u.username for u in rest.users] == ["carol", "dave"]
