"""Flower's default config file (it reads ``./flowerconfig.py``): loads dashboards/flowerconfig.py.

The settings and their environment variables are documented there.
"""

import runpy
from pathlib import Path

globals().update(
    (name, value)
    for name, value in runpy.run_path(
        str(Path(__file__).resolve().parent / "dashboards" / "flowerconfig.py")
    ).items()
    if not name.startswith("_")
)
