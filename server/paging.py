"""AIP-158 pagination rules shared by list calls: page sizes and opaque page tokens.

A page token carries the position after which the next page starts (e.g. the
last username of the previous page), a digest of the request's other fields
(AIP-158: they must not change between pages) and a checksum, as URL-safe
base64. Tokens are opaque to clients but not secret: they hold nothing a caller
could not ask for anyway, so they are checked for corruption and reuse with
other filters, not signed. Every bad token is an :class:`InvalidArgument` with
a sentence for a person (https://google.aip.dev/158).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json

from .errors import InvalidArgument

USERS_DEFAULT_PAGE_SIZE = 100  # ListUsers page_size 0
USERS_MAX_PAGE_SIZE = 1000  # larger ListUsers page sizes are capped (1000 users < 0.5 MB)
MAX_TOKEN_CHARS = 2048  # a longer page_token cannot be one of ours
_CHECK_BYTES = 8  # truncated SHA-256 of the payload: detects corrupted or edited tokens
_FIELD = "page_token"


def page_size(requested: int, *, default: int, maximum: int) -> int:
    """The number of items to return for a request's ``page_size`` (AIP-158).

    0 means ``default``; more than ``maximum`` is capped at ``maximum``.

    Raises:
        InvalidArgument: ``requested`` is negative.
    """
    if requested < 0:
        raise InvalidArgument.for_field("page_size", "must not be negative")
    return min(requested or default, maximum)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode_token(kind: str, position: str, request_key: str) -> str:
    """An opaque page token for list ``kind`` continuing after ``position``.

    ``request_key`` sums up the request's other fields (e.g. ``"online_only=True"``);
    :func:`decode_token` refuses the token for a request with a different key.
    """
    payload = json.dumps(
        {"k": kind, "p": position, "r": _digest(request_key)},
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()
    check = hashlib.sha256(payload).digest()[:_CHECK_BYTES]
    return base64.urlsafe_b64encode(check + payload).decode().rstrip("=")


def decode_token(kind: str, token: str, request_key: str) -> str:
    """The position a page token of list ``kind`` continues after ("" for no token).

    Raises:
        InvalidArgument: the token is not one :func:`encode_token` made for this
            list (garbage, truncated, edited, from another list), or was made
            for a request with other filters.
    """
    if not token:
        return ""
    bad = InvalidArgument.for_field(
        _FIELD, "not a token from a previous page of this list; start again without a page token"
    )
    if len(token) > MAX_TOKEN_CHARS:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise bad from None
    check, payload = raw[:_CHECK_BYTES], raw[_CHECK_BYTES:]
    if len(check) < _CHECK_BYTES or hashlib.sha256(payload).digest()[:_CHECK_BYTES] != check:
        raise bad
    try:
        fields = json.loads(payload.decode())
    except (UnicodeDecodeError, ValueError):
        raise bad from None
    if not (
        isinstance(fields, dict)
        and fields.get("k") == kind
        and isinstance(fields.get("p"), str)
        and isinstance(fields.get("r"), str)
    ):
        raise bad
    if fields["r"] != _digest(request_key):
        raise InvalidArgument.for_field(
            _FIELD,
            "was made for a request with other filters; repeat that request, or start again"
            " without a page token",
        )
    position: str = fields["p"]
    return position
