"""Security tests run against the in-process server of the integration tests (port 0, temp DB)."""

from __future__ import annotations

from ..integration.conftest import db_path, node, node_factory

__all__ = ["db_path", "node", "node_factory"]
