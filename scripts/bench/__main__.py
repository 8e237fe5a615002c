"""``python -m scripts.bench``: run the benchmark (see :mod:`scripts.bench.cli`)."""

import os
import sys

# The bench forks only to exec (servers, py-spy): grpc's fork handlers are not needed
# and would log "Other threads are currently calling into gRPC" on every fork.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

from .cli import main  # after the environment grpc reads at import

sys.exit(main())
