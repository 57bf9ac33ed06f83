#!/usr/bin/env python3
"""Run the dagflow dashboard: ``python dashboards/run_dashboard.py [--host H] [--port P]``.

The same as ``dagflow dashboard`` / ``python -m dagflow.dashboard``; it also works from a
checkout where dagflow is not installed. See ``--help`` for every option.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dagflow.dashboard.app import main

if __name__ == "__main__":
    raise SystemExit(main())
