"""Hubbub benchmark package: the real server against a bare grpc.aio relay on the same stack.

``make bench`` runs ``python -m scripts.bench`` from the repository root (the
root must be on ``sys.path``: ``-m`` puts the working directory there, so no
``sys.path`` edits are needed). Modules, one concept each:

* :mod:`.config`: the run's settings and time bounds;
* :mod:`.relay`: the baseline, a minimal in-memory ``Chat`` relay (its own
  subprocess: ``python -m scripts.bench.relay``);
* :mod:`.servers`: server subprocesses (start, stop, address, log);
* :mod:`.seed`: accounts, session tokens and groups written straight into a
  store before a server starts (no argon2id per user);
* :mod:`.procstat`: CPU seconds, RSS and machine facts from ``/proc``;
* :mod:`.stats`: percentiles;
* :mod:`.tracker`: per-message accounting (lost, duplicated, out of order);
* :mod:`.peer`: one benchmark user's Chat stream;
* :mod:`.phases`: warm-up, ping-pong, max throughput, light load, idle streams;
* :mod:`.system`: one system's run (start, seed, phases, stop);
* :mod:`.streams`: ``--streams N`` (N live streams, one group fan-out);
* :mod:`.cluster`: ``--cluster`` (two nodes on throw-away PostgreSQL + Redis);
* :mod:`.profiling`: optional py-spy recording of the server during phases;
* :mod:`.report`: the table and the JSON report;
* :mod:`.cli`: flags and the entry point (``__main__``).
"""
