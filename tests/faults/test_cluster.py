"""Many nodes under load: node deaths lose nothing and the dead node's clients move on.

The CI-sized version of ``make torture ARGS="--cluster"`` (see tests/harness/cluster.py):
two ``hubbub-server`` subprocess nodes on the throw-away PostgreSQL + Redis, clients
through the client library with both node addresses, the busiest node killed each cycle.
Failover times are printed; only a generous bound is asserted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ..backends import postgres_server, postgres_url, redis_server, redis_url
from ..harness.cluster import Cluster, cluster_torture

__all__ = ["postgres_server", "postgres_url", "redis_server", "redis_url"]  # fixtures by name

FAILOVER_BOUND_S = 30.0  # generous: the goal (issue 9) is 5 s, printed by the run
NODE_ARGS: tuple[str, ...] = ()  # production defaults (--presence-ttl 5)


@pytest.fixture
def cluster(postgres_url: str, redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    """Two nodes on one fresh PostgreSQL database and one emptied Redis."""
    with Cluster(postgres_url, redis_url, tmp_path, nodes=2, node_args=NODE_ARGS) as nodes:
        yield nodes


@pytest.mark.timeout(150)
async def test_node_deaths_lose_nothing_and_clients_fail_over(cluster: Cluster) -> None:
    """kill -9 and SIGTERM of the busiest node: nothing lost, duplicated or reordered, the
    SIGTERMed node exits within its grace period, and each of its clients delivers again
    on the other node within the bound."""
    report = await cluster_torture(
        cluster, ["kill9", "sigterm", "kill9"], pairs=3, seed=17, recover_s=FAILOVER_BOUND_S
    )
    print(report.table())
    assert report.verdict.confirmed > 100
    assert report.verdict.ok, report.table()
    assert all(cycle.clients > 0 for cycle in report.cycles), report.table()
    assert report.stranded == 0, report.table()
    assert not report.problems, report.table()  # each SIGTERM ended within --grace
    assert max(report.failover_s) <= FAILOVER_BOUND_S


@pytest.mark.timeout(150)
async def test_frozen_node_loses_nothing(cluster: Cluster) -> None:
    """SIGSTOP of the busiest node until its clients moved (or 20 s), then SIGCONT: every
    confirmed message is shown once and in order."""
    report = await cluster_torture(cluster, ["sigstop"], pairs=3, seed=19, recover_s=20.0)
    print(report.table())
    assert report.cycles[0].clients > 0
    assert report.verdict.confirmed > 100
    assert report.verdict.ok, report.table()
