"""The sans-I/O SQL core without a database: placeholders, dialects, DDL, scripted operations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from hubbub.server import schema, store_ops_accounts, store_ops_groups, store_ops_receipts
from hubbub.server.errors import GroupNotFound, UsernameTaken
from hubbub.server.models import Account, utc_now
from hubbub.server.sql import POSTGRES, SQLITE, Dialect, Fetch, Op, Query, numbered

ALICE = Account(1, "alice", "Alice", "h", False, utc_now())
BOB = Account(2, "bob", "Bob", "h", False, utc_now())


def drive(op: Op[Any], answer: Callable[[Query], Any]) -> tuple[Any, list[Query]]:
    """Run ``op`` with ``answer(query)`` as each query's result; return (result, queries)."""
    seen: list[Query] = []
    try:
        query = next(op)
        while True:
            seen.append(query)
            query = op.send(answer(query))
    except StopIteration as done:
        return done.value, seen


def test_numbered_placeholders_count_from_one_in_order() -> None:
    """``?`` become ``$1…$n`` left to right; a query without any is unchanged."""
    assert numbered("a = ? AND b IN (?, ?)") == "a = $1 AND b IN ($2, $3)"
    assert numbered("SELECT 1") == "SELECT 1"


def test_in_list_is_in_on_sqlite_and_any_array_on_postgres() -> None:
    """A list parameter: ``IN (?, ?)`` with spread values vs ``= ANY(?::T[])`` with one list."""
    assert SQLITE.in_list("id", [3, 4], "bigint") == ("id IN (?,?)", (3, 4))
    assert POSTGRES.in_list("id", [3, 4], "bigint") == ("id = ANY(?::bigint[])", ([3, 4],))


@pytest.mark.parametrize("dialect", [SQLITE, POSTGRES], ids=["sqlite", "postgres"])
def test_every_migration_is_spelled_out_for_each_dialect(dialect: Dialect) -> None:
    """Every version has DDL in each dialect, with every type placeholder replaced."""
    for migration in schema.MIGRATIONS:
        statements = migration.statements(dialect)
        assert statements, migration.version
        assert not [s for s in statements if "{" in s or "}" in s]
    v2 = " ".join(schema.MIGRATIONS[1].statements(dialect))
    assert ("messages_v2" in v2) == (dialect is SQLITE)  # SQLite rebuilds, PostgreSQL alters
    assert ("DROP NOT NULL" in v2) == (dialect is POSTGRES)


def ack_answers(query: Query) -> Any:
    """Results for an ack of bob's inbox: acked 0 of 2, one direct text from alice."""
    if query[0].startswith("SELECT acked_sequence"):
        return (0, 2)
    if query[0].startswith("SELECT i.sequence, m.id"):
        return [(2, 7, "c-7", 0, None, 1, "alice", "Alice", "h", False, 0)]
    if query[0].startswith("INSERT INTO messages"):
        return 8
    if query[0].startswith("UPDATE users SET last_sequence"):
        return 5 if query[2] is Fetch.VALUE else [(1, 5)]
    return None


@pytest.mark.parametrize("dialect", [SQLITE, POSTGRES], ids=["sqlite", "postgres"])
def test_ack_is_one_rule_with_row_locks_only_where_writers_run_in_parallel(
    dialect: Dialect,
) -> None:
    """The same ack operation makes one receipt for alice on both; only PostgreSQL locks rows."""
    receipts, queries = drive(store_ops_receipts.ack(dialect, BOB, 2, 1000), ack_answers)
    assert [(r.recipient, r.sequence, r.client_id, r.ref_message_id) for r in receipts] == [
        ("alice", 5, "c-7", 7)
    ]
    locks = [q for q in queries if "FOR NO KEY UPDATE" in q[0]]
    assert len(locks) == (1 if dialect is POSTGRES else 0)
    inbox = [q for q in queries if q[0].startswith("INSERT INTO inbox")]
    assert [tuple(q[1]) for q in inbox] == [(1, 5, 8)]


def test_taken_username_and_unknown_group_raise_the_domain_errors() -> None:
    """A conflicting insert (no id returned) is UsernameTaken; no group row is GroupNotFound."""
    with pytest.raises(UsernameTaken):
        drive(
            store_ops_accounts.create_account(SQLITE, "bob", "Bob", "h", False, 0), lambda q: None
        )
    with pytest.raises(GroupNotFound):
        drive(store_ops_groups.member_group(POSTGRES, "team", ALICE), lambda q: [])
