"""Fault-injection harness shared by tests/faults and scripts/torture.py."""
