"""``python -m scripts.bench``: run the benchmark (see :mod:`scripts.bench.cli`)."""

import sys

from .cli import main

sys.exit(main())
