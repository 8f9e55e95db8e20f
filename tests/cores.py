"""How many cores each pytest-xdist worker may use: its share of the machine (1 on two cores, -n 2)."""

import os

WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, (os.cpu_count() or 1) // WORKERS)
