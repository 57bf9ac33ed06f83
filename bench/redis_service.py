"""The Redis a benchmark uses: a private ``redis-server`` unless ``BENCH_REDIS`` names one.

Benchmarks flush the databases they use, so they never run against a server someone else
may be using (such as the one on 6379) unless they are told to. By default each script
starts its own ``redis-server`` on a free port (:class:`tests.support.redis_server.RedisServer`,
in a temporary folder) and stops it when it ends; ``BENCH_REDIS=redis://host:port`` points
it at an existing server instead, which is then never stopped.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.redis_server import RedisServer  # noqa: E402

#: Environment variable naming an existing server (``redis://host:port``, no database).
ENV = "BENCH_REDIS"


def redis_base() -> str:
    """``redis://host:port`` of the benchmark's Redis, starting a private server if needed.

    The private server is stopped (and its folder removed) when the interpreter exits.

    Raises:
        FileNotFoundError: ``BENCH_REDIS`` is unset and ``redis-server`` is not installed.
    """
    given = os.environ.get(ENV)
    if given:
        return given.rstrip("/")
    folder = Path(tempfile.mkdtemp(prefix="dagflow-bench-redis-"))
    server = RedisServer.start(folder)

    def _stop() -> None:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)

    atexit.register(_stop)
    print(f"[bench] private redis-server on port {server.port}", file=sys.stderr)
    return f"redis://127.0.0.1:{server.port}"
