"""The JSON shapes the `--json` flags of `hubbub who`, `listen`, `groups` and `history`
print (times in ISO 8601, UTC; docs/cli.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .events import (
    GroupInfo,
    IncomingMessage,
    UserInfo,
)


def user_json(user: UserInfo) -> dict[str, Any]:
    """A user as a JSON-ready dict (times in ISO 8601, UTC)."""
    return {
        "username": user.username,
        "display_name": user.display_name,
        "online": user.online,
        "bot": user.bot,
        "presence_change_time": (
            user.presence_change_time.isoformat() if user.presence_change_time else None
        ),
    }


def message_json(message: IncomingMessage) -> dict[str, Any]:
    """An incoming message as the JSON object `listen --json` prints.

    Keys: sequence, message_id, sender, recipient, body, send_time (ISO 8601, UTC),
    and `group` for a group message only.
    """
    data: dict[str, Any] = {
        "sequence": message.sequence,
        "message_id": message.message_id,
        "sender": message.sender,
        "recipient": message.recipient,
        "body": message.body,
        "send_time": message.send_time.astimezone(UTC).isoformat(),
    }
    if message.group:
        data["group"] = message.group
    return data


def group_json(group: GroupInfo) -> dict[str, Any]:
    """A group as the JSON object `groups --json` prints: name, members, create_time."""
    return {
        "name": group.name,
        "members": list(group.members),
        "create_time": _iso(group.create_time),
    }


def history_json(message: IncomingMessage) -> dict[str, Any]:
    """A history message as `history --json` prints it.

    Keys: message_id, sender, recipient, body, send_time (ISO 8601, UTC), and `group`
    for a group message only.
    """
    data: dict[str, Any] = {
        "message_id": message.message_id,
        "sender": message.sender,
        "recipient": message.recipient,
        "body": message.body,
        "send_time": _iso(message.send_time),
    }
    if message.group:
        data["group"] = message.group
    return data


def _iso(when: datetime | None) -> str | None:
    return when.astimezone(UTC).isoformat() if when is not None else None
