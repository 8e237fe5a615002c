"""Hubbub server: a gRPC messenger (package ``hubbub.server``).

Layers: ``errors``/``models`` (plain types) → ``usernames``/``passwords``/``auth``
(accounts and sessions) → ``store`` (durable state, SQLite by default) →
``broker``/``presence`` (fan-out and who is online) → ``hub`` (chat sessions
and delivery) → ``grpc_*`` transport modules, the only ones that import
``hubbub.v1``.
"""
