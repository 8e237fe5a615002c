"""Accounts, session tokens and groups written into a store before a server starts.

Registering through the API costs an argon2id hash and a verification per user
(~0.1 s of CPU each), too slow for hundreds or thousands of benchmark users.
This module writes the same rows through the server's own store interface
(:class:`hubbub.server.store.Store`): every account gets the same argon2id hash
of :data:`~scripts.bench.config.PASSWORD` (computed once) and a session token
made as :meth:`hubbub.server.auth.AuthService.login` makes them (random
URL-safe token, SHA-256 stored). It is the only bench module that imports
server internals; if the store interface changes, fix it here.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from argon2 import PasswordHasher

from hubbub.server.auth import TOKEN_BYTES, token_hash
from hubbub.server.models import Account, utc_now
from hubbub.server.store import Store

from .config import PASSWORD

SESSION_TTL = timedelta(days=1)
SEED_CONCURRENCY = 256  # writes queued at once (the SQLite writer group-commits them)


def open_sqlite(path: Path) -> Store:
    """The SQLite store of ``path`` (not opened)."""
    from hubbub.server.store_sqlite import SqliteStore

    return SqliteStore(path)


def open_postgres(url: str) -> Store:
    """The PostgreSQL store at ``url`` (not opened)."""
    from hubbub.server.store_postgres import PostgresStore

    return PostgresStore(url)


async def seed_users(
    store: Store, names: Sequence[str], *, group: str = "", group_members: int = 0
) -> dict[str, str]:
    """Create accounts ``names`` with session tokens, and optionally one group.

    Args:
        store: an opened store, with none of ``names`` taken.
        names: canonical usernames (RFC 8265 rules: 3-32 of a-z 0-9 ``_.-``).
        group: if set, a group of that name created by ``names[0]`` with the next
            ``group_members - 1`` names as members (the store has no member cap;
            the API's 1,000-per-call cap is the GroupService's).
        group_members: members of ``group``, creator included.

    Returns:
        username → bearer token (valid for :data:`SESSION_TTL`).
    """
    encoded = await asyncio.to_thread(PasswordHasher().hash, PASSWORD)
    expires = utc_now() + SESSION_TTL
    limit = asyncio.Semaphore(SEED_CONCURRENCY)
    accounts: dict[str, Account] = {}
    tokens: dict[str, str] = {}

    async def one(name: str) -> None:
        """Create ``name`` and a session for it."""
        async with limit:
            account = await store.create_account(name, name, encoded)
            token = secrets.token_urlsafe(TOKEN_BYTES)
            await store.create_session(token_hash(token), account.id, expires)
            accounts[name] = account
            tokens[name] = token

    await asyncio.gather(*(one(n) for n in names))
    if group and group_members > 1:
        members = [accounts[n] for n in names[1:group_members]]
        await store.create_group(group, accounts[names[0]], members, utc_now())
    return tokens


async def seed_database(
    store: Store, names: Sequence[str], *, group: str = "", group_members: int = 0
) -> dict[str, str]:
    """Open ``store``, :func:`seed_users`, close it; returns username → token."""
    await store.open()
    try:
        return await seed_users(store, names, group=group, group_members=group_members)
    finally:
        await store.close()
