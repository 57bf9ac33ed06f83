"""A real S3-compatible endpoint for the output store's tests: a ``moto_server`` process.

``moto`` in server mode (``moto[server]``, dev extras) serves the S3 API over HTTP on a free
port of 127.0.0.1; the test talks to it through ``s3fs`` exactly as to AWS, with the
endpoint given by ``AWS_ENDPOINT_URL`` (botocore reads it) and dummy credentials. The
server keeps its buckets in memory and is stopped with its test (its own process group).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.support.net import free_port
from tests.support.services import require_executable

#: Seconds moto_server has to accept connections after it is started.
START_TIMEOUT_S = 20.0


class MotoServer:
    """One ``moto_server`` process on a free port.

    Attributes:
        endpoint: ``http://127.0.0.1:PORT``.
        env: The variables a client (a worker, the test) needs to reach it.
    """

    def __init__(self, proc: subprocess.Popen[bytes], port: int) -> None:
        self.proc = proc
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        self.env = {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    @classmethod
    def start(cls, log: Path) -> MotoServer:
        """Start the server and wait until it accepts connections.

        fsspec keeps one S3 filesystem per set of options, and the endpoint comes from the
        environment (``AWS_ENDPOINT_URL``), which is not one of them: a filesystem made for
        an earlier test's server (now stopped) would be reused. So the cache is cleared here.
        """
        from s3fs import S3FileSystem

        S3FileSystem.clear_instance_cache()
        exe = require_executable("moto_server", "the S3 output store tests need moto[server]")
        port = free_port()
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [exe, "-H", "127.0.0.1", "-p", str(port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return cls(proc, port)
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGKILL)
        raise RuntimeError(f"moto_server did not start on port {port}: {log.read_text()[-2000:]}")

    def make_bucket(self, name: str) -> str:
        """Create bucket ``name``; return its ``s3://`` URL."""
        import boto3  # moto's own dependency

        s3 = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket=name)
        return f"s3://{name}"

    def stop(self) -> None:
        """Stop the server (and nothing else: its own process group)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
