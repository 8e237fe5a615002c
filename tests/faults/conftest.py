"""Fault tests use the in-process server fixtures of the integration tests."""

from ..integration.conftest import db_path, node, node_factory

__all__ = ["db_path", "node", "node_factory"]
