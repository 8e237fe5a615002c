"""Harness shared by the tests and scripts/ (``python -m scripts.…``): the server subprocess
(server_process.py), the load driver, the TCP fault proxy and the kill schedules."""
