"""``python -m dagflow``: the ``dagflow`` command (see ``--help``)."""

from __future__ import annotations

from dagflow.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
