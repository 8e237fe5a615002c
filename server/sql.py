"""The sans-I/O SQL core shared by the SQLite and PostgreSQL stores.

An *operation* is a generator that yields :data:`Query` tuples and receives
each query's result; its return value is the operation's result. Operations
(``store_ops_*``, ``schema``, ``export_*``) hold the schema, the queries, the row
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
import json
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


#: One SQL statement with ``?`` placeholders, its parameters and the result wanted
#: (a plain tuple: one is built for every query of every write).
Query: TypeAlias = tuple[str, Sequence[Any], Fetch]


#: An operation returning ``T``: yields queries, receives their results.
Op: TypeAlias = Generator[Query, Any, T]


def execute(sql: str, *params: Any) -> Query:
    """A statement whose result is not needed."""
    return (sql, params, Fetch.NONE)


def one(sql: str, *params: Any) -> Query:
    """A query answered with its first row, or None."""
    return (sql, params, Fetch.ONE)


def rows(sql: str, *params: Any) -> Query:
    """A query answered with the list of its rows."""
    return (sql, params, Fetch.ALL)


def value(sql: str, *params: Any) -> Query:
    """A query answered with the first column of its first row, or None."""
    return (sql, params, Fetch.VALUE)


def many(sql: str, params: Iterable[Sequence[Any]]) -> Query:
    """A statement run once per parameter tuple (``executemany``)."""
    return (sql, list(params), Fetch.MANY)


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

    def table(
        self, alias: str, columns: Sequence[tuple[str, str]], values: Sequence[Sequence[Any]]
    ) -> tuple[str, tuple[Any, ...]]:
        """Rows passed as parameters, usable as a table in ``FROM`` (multi-row statements).

        Args:
            alias: the table's name in the query.
            columns: ``(name, PostgreSQL type)`` of each column, e.g. ``("uid", "bigint")``.
            values: the rows, each a sequence of ``len(columns)`` ints, strings or None.

        Returns:
            The ``FROM`` item and its parameters. The table has the given columns plus
            ``ord``, the row's position (ascending in ``values`` order). PostgreSQL:
            ``unnest(?::T[], …) WITH ORDINALITY``, one array parameter per column (one
            prepared statement for any number of rows,
            https://www.postgresql.org/docs/current/functions-array.html); SQLite:
            ``json_each(?)`` over one JSON array of rows (https://www.sqlite.org/json1.html).
        """
        names = [name for name, _ in columns]
        if self.name == "postgres":
            arrays = ", ".join(f"?::{sql_type}[]" for _, sql_type in columns)
            params = tuple(list(column) for column in zip(*values, strict=True))
            if not params:
                params = tuple([] for _ in columns)
            return (
                f"unnest({arrays}) WITH ORDINALITY AS {alias}({', '.join(names)}, ord)",
                params,
            )
        picks = ", ".join(f"json_extract(value, '$[{i}]') AS {n}" for i, n in enumerate(names))
        return (
            f"(SELECT {picks}, key AS ord FROM json_each(?)) AS {alias}",
            (json.dumps([list(row) for row in values]),),
        )


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
