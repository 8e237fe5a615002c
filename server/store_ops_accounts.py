"""Accounts and sessions: the look-alike username rule, password changes revoking
other sessions, sessions keyed by the token's hash."""

from __future__ import annotations

from .errors import UsernameConfusable, UsernameTaken
from .models import (
    Account,
    SessionInfo,
    from_ms,
)
from .sql import Dialect, Op, execute, one, rows, value
from .store_ops_mapping import (
    ACCOUNT_COLS,
    SENDER_COLS,
    account_of,
)
from .usernames import skeleton

SKELETON_LOCK = 0x534B454C  # "SKEL": with hashtext(skeleton), serialises look-alike checks


def _confusable(username: str) -> UsernameConfusable:
    return UsernameConfusable(
        f"The username '{username}' is too similar to an existing username; choose another."
    )


# -- accounts and sessions ---------------------------------------------------------------


def create_account(
    d: Dialect, username: str, display_name: str, password_hash: str, bot: bool, created_ms: int
) -> Op[Account]:
    """Insert an account and its skeleton; the look-alike check and the insert are atomic
    (one SQLite writer; a PostgreSQL advisory lock per skeleton).

    Raises:
        UsernameTaken, UsernameConfusable: as the names say.
    """
    shape = skeleton(username)
    if d.concurrent_writers:  # writers of one skeleton queue here: the check sees every commit
        yield execute("SELECT pg_advisory_xact_lock(?, hashtext(?))", SKELETON_LOCK, shape)
    alike = yield value("SELECT 1 FROM users WHERE skeleton = ? AND username != ?", shape, username)
    if alike and not (yield value("SELECT 1 FROM users WHERE username = ?", username)):
        raise _confusable(username)
    account_id = yield value(
        "INSERT INTO users (username, display_name, password_hash, bot, created_ms, skeleton)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (username) DO NOTHING RETURNING id",
        username,
        display_name,
        password_hash,
        bot,
        created_ms,
        shape,
    )
    if account_id is None:
        raise UsernameTaken(f"The username '{username}' is already taken.")
    return Account(account_id, username, display_name, password_hash, bot, from_ms(created_ms))


def get_account(username: str) -> Op[Account | None]:
    """The account named ``username``, or None."""
    row = yield one(f"SELECT {ACCOUNT_COLS} FROM users WHERE username = ?", username)
    return account_of(row) if row else None


def list_accounts(d: Dialect, after: str, limit: int) -> Op[list[Account]]:
    """Accounts named after ``after`` in code point order, at most ``limit`` (0: all)."""
    sql = (
        f"SELECT {ACCOUNT_COLS} FROM users WHERE username{d.binary} > ? ORDER BY username{d.binary}"
    )
    found = yield (rows(sql + " LIMIT ?", after, limit) if limit > 0 else rows(sql, after))
    return [account_of(r) for r in found]


def update_account(
    d: Dialect,
    account: Account,
    display_name: str | None,
    password_hash: str | None,
    keep_session: bytes | None,
) -> Op[Account]:
    """Change display name and/or password hash; a new password revokes other sessions."""
    if display_name is not None:
        yield execute("UPDATE users SET display_name = ? WHERE id = ?", display_name, account.id)
    if password_hash is not None:
        yield execute("UPDATE users SET password_hash = ? WHERE id = ?", password_hash, account.id)
        yield execute(
            f"DELETE FROM sessions WHERE user_id = ? AND token_hash {d.is_distinct} ?",
            account.id,
            keep_session,
        )
    row = yield one(f"SELECT {ACCOUNT_COLS} FROM users WHERE id = ?", account.id)
    return account_of(row)


def create_session(token_hash: bytes, account_id: int, now_ms: int, expires_ms: int) -> Op[None]:
    """Store a session keyed by the token's hash (and drop expired ones)."""
    yield execute("DELETE FROM sessions WHERE expires_ms < ?", now_ms)
    yield execute(
        "INSERT INTO sessions (token_hash, user_id, created_ms, expires_ms) VALUES (?, ?, ?, ?)",
        token_hash,
        account_id,
        now_ms,
        expires_ms,
    )


def get_session(token_hash: bytes, now_ms: int) -> Op[SessionInfo | None]:
    """The account and expiry of a session unexpired at ``now_ms``, or None."""
    row = yield one(
        f"SELECT {SENDER_COLS}, x.expires_ms FROM sessions x"
        " JOIN users s ON s.id = x.user_id WHERE x.token_hash = ? AND x.expires_ms > ?",
        token_hash,
        now_ms,
    )
    return SessionInfo(account_of(tuple(row)[:6]), from_ms(row[6])) if row else None


def delete_session(token_hash: bytes) -> Op[None]:
    """Revoke one session."""
    yield execute("DELETE FROM sessions WHERE token_hash = ?", token_hash)
