"""The sans-I/O SQL core shared by the SQLite and PostgreSQL stores.

An *operation* is a generator that yields :class:`Query` objects and receives
each query's result; its return value is the operation's result. Operations
(``store_ops``, ``schema``, ``export``) hold the schema, the queries, the row
mapping and the inbox rules once; they never do I/O. Each backend has one
small *driver* that runs an operation on its connection:
:func:`hubbub.server.store_sqlite.run_op` (synchronous, in the SQLite writer
or reader threads) and :func:`hubbub.server.store_postgres.run_op` (async, on
an asyncpg connection). This is the "sans-I/O" shape of h11 and websockets
(https://sans-io.readthedocs.io/).

Queries use ``?`` placeholders (SQLite's qmark style); the PostgreSQL driver
rewrites them to ``$1, $2, …`` (:func:`numbered`). What really differs between
the two databases is in :class:`Dialect`: list parameters (``IN (?, ?)`` vs
``= ANY(?::T[])``), code point collation, null-safe comparison, row and
advisory locks, and the DDL type names.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

T = TypeVar("T")


class Fetch(enum.Enum):
    """What a query's result is, as sent back into the operation."""

    NONE = "none"  # execute only: None
    ONE = "one"  # the first row (a tuple-like) or None
    ALL = "all"  # every row (a list of tuple-likes)
    VALUE = "value"  # the first column of the first row, or None
    MANY = "many"  # executemany: params is a list of tuples; None


@dataclass(frozen=True, slots=True)
class Query:
    """One SQL statement with ``?`` placeholders, its parameters and the result wanted."""

    sql: str
    params: Sequence[Any]
    fetch: Fetch


#: An operation returning ``T``: yields queries, receives their results.
Op: TypeAlias = Generator[Query, Any, T]


def execute(sql: str, *params: Any) -> Query:
    """A statement whose result is not needed."""
    return Query(sql, params, Fetch.NONE)


def one(sql: str, *params: Any) -> Query:
    """A query answered with its first row, or None."""
    return Query(sql, params, Fetch.ONE)


def rows(sql: str, *params: Any) -> Query:
    """A query answered with the list of its rows."""
    return Query(sql, params, Fetch.ALL)


def value(sql: str, *params: Any) -> Query:
    """A query answered with the first column of its first row, or None."""
    return Query(sql, params, Fetch.VALUE)


def many(sql: str, params: Iterable[Sequence[Any]]) -> Query:
    """A statement run once per parameter tuple (``executemany``)."""
    return Query(sql, list(params), Fetch.MANY)


_PLACEHOLDER = re.compile(r"\?")


@functools.lru_cache(maxsize=512)
def numbered(sql: str) -> str:
    """``sql`` with each ``?`` replaced by ``$1``, ``$2``, … (PostgreSQL's placeholders).

    The queries of this package have no ``?`` inside string literals. Cached:
    asyncpg keys its prepared-statement cache by the query text.
    """
    counter = iter(range(1, sql.count("?") + 1))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between SQLite and PostgreSQL, for operations and DDL.

    Attributes:
        name: ``"sqlite"`` or ``"postgres"``.
        concurrent_writers: several transactions write at once (PostgreSQL), so
            operations take row and advisory locks; SQLite has one writer thread.
        binary: collation suffix that sorts and compares text by code point
            (SQLite's default BINARY; PostgreSQL's ``COLLATE "C"``).
        is_distinct: the null-safe "differs" operator.
        types: DDL names, used as ``{ID}``, ``{BIGINT}``… in :mod:`.schema`.
    """

    name: str
    concurrent_writers: bool
    binary: str
    is_distinct: str
    types: dict[str, str]

    def in_list(
        self, column: str, values: Sequence[Any], sql_type: str
    ) -> tuple[str, tuple[Any, ...]]:
        """``column`` is one of ``values``: the SQL condition and its parameters.

        SQLite: ``column IN (?, ?, …)``; PostgreSQL: ``column = ANY(?::type[])``
        with the list as one parameter (one prepared statement for any length).
        """
        if self.name == "postgres":
            return f"{column} = ANY(?::{sql_type}[])", (list(values),)
        return f"{column} IN ({','.join('?' * len(values))})", tuple(values)


SQLITE = Dialect(
    name="sqlite",
    concurrent_writers=False,
    binary="",
    is_distinct="IS NOT",
    types={
        "ID": "INTEGER PRIMARY KEY",
        "BIGINT": "INTEGER",
        "SMALLINT": "INTEGER",
        "BOOL": "INTEGER",
        "FALSE": "0",
        "BYTES": "BLOB",
        "WITHOUT_ROWID": " WITHOUT ROWID",
    },
)

POSTGRES = Dialect(
    name="postgres",
    concurrent_writers=True,
    binary=' COLLATE "C"',
    is_distinct="IS DISTINCT FROM",
    types={
        "ID": "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        "BIGINT": "BIGINT",
        "SMALLINT": "SMALLINT",
        "BOOL": "BOOLEAN",
        "FALSE": "FALSE",
        "BYTES": "BYTEA",
        "WITHOUT_ROWID": "",
    },
)
