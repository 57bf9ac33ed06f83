"""``python -m dagflow.dashboard``: serve the dashboard (see ``--help``)."""

from __future__ import annotations

from dagflow.dashboard.app import main

if __name__ == "__main__":
    raise SystemExit(main())
