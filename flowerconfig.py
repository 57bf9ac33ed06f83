"""Flower's configuration for dagflow (``celery -A dagflow flower``).

Flower applies ``FLOWER_*`` environment variables first, then this file, then its command
line, so this file reads the environment itself to keep the variables in charge:

* ``FLOWER_ADDRESS`` (default ``127.0.0.1``: Flower can revoke and kill tasks, so it listens
  on localhost unless told otherwise) and ``FLOWER_PORT`` (default 5555);
* ``FLOWER_BASIC_AUTH``: ``user:password`` pairs separated by commas; unset means no auth.

Flower reads ``./flowerconfig.py`` by default, so run it from the repository root (as the
``Procfile`` does), or pass ``--conf=/path/to/flowerconfig.py`` from anywhere else.
"""

import os

address = os.environ.get("FLOWER_ADDRESS") or "127.0.0.1"
port = int(os.environ.get("FLOWER_PORT") or 5555)
# Tasks Flower keeps in memory (its default is 100,000).
max_tasks = int(os.environ.get("FLOWER_MAX_TASKS") or 10_000)

if os.environ.get("FLOWER_BASIC_AUTH"):
    basic_auth = [
        pair.strip() for pair in os.environ["FLOWER_BASIC_AUTH"].split(",") if pair.strip()
    ]
