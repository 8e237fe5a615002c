"""Conversation history, newest first, paged with opaque tokens (AIP-158)."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from . import usernames
from .errors import InvalidArgument, UserNotFound
from .hub import Hub
from .models import Account, StoredMessage

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
_PREFIX = "h1:"
MAX_MESSAGE_ID = 2**63 - 1  # message ids are signed 64-bit integers in every store


def encode_token(before_id: int) -> str:
    """Opaque page token for messages older than ``before_id``."""
    return base64.urlsafe_b64encode(f"{_PREFIX}{before_id}".encode()).decode().rstrip("=")


def decode_token(token: str) -> int:
    """The message id a page token points before (:data:`MAX_MESSAGE_ID` for an empty token).

    Raises:
        InvalidArgument: the token was not made by :func:`encode_token` (not base64url of
            ``h1:<decimal id>``, or an id outside 1 to 2^63-1, the range of stored ids).
    """
    if not token:
        return MAX_MESSAGE_ID
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        digits = raw.removeprefix(_PREFIX)
        if raw.startswith(_PREFIX) and digits.isascii() and digits.isdigit() and len(digits) < 20:
            value = int(digits)
            if 0 < value <= MAX_MESSAGE_ID:
                return value
    except (ValueError, UnicodeDecodeError):
        pass
    raise InvalidArgument.for_field("page_token", "not a token from a previous page")


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """One page: ``messages`` newest first; ``next_token`` empty on the last page."""

    messages: list[StoredMessage]
    next_token: str


class HistoryService:
    """Reads conversations for their participants."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def page(
        self,
        account: Account,
        *,
        username: str | None,
        group: str | None,
        page_size: int,
        page_token: str,
    ) -> HistoryPage:
        """A page of a direct (``username``) or group conversation.

        Raises:
            InvalidArgument: no conversation named, bad page size or token.
            UserNotFound / GroupNotFound: no such conversation.
            NotGroupMember: the caller is not in the group (PERMISSION_DENIED).
        """
        if page_size < 0 or page_size > MAX_PAGE_SIZE:
            raise InvalidArgument.for_field("page_size", f"must be 0 to {MAX_PAGE_SIZE}")
        size = page_size or DEFAULT_PAGE_SIZE
        before = decode_token(page_token)
        peer = None
        group_name = None
        if username:
            peer = await self.hub.find_account(username)
            if peer is None:
                raise UserNotFound("The destination user does not exist")
        elif group:
            group_name = usernames.group_reference(group)
        else:
            raise InvalidArgument.for_field("conversation", "set username or group")
        rows = await self.hub.store.history(
            account, peer=peer, group=group_name, before_id=before, limit=size + 1
        )
        more = len(rows) > size
        rows = rows[:size]
        return HistoryPage(rows, encode_token(rows[-1].message_id) if more else "")
