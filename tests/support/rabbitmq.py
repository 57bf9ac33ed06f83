"""A RabbitMQ virtual host of the test session's own, deleted afterwards.

RabbitMQ runs on this machine on 5672 (it is a system service, not started by the suite);
each session makes its own vhost, so two runs of the suite never share a queue, and deletes
it (with every queue and exchange in it) at the end.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import uuid

#: RabbitMQ's AMQP port on this machine.
AMQP_PORT = 5672
#: Seconds one rabbitmqctl call may take.
CTL_TIMEOUT_S = 60


def rabbitmq_available() -> bool:
    """True when ``rabbitmqctl`` is installed and something listens on the AMQP port."""
    if shutil.which("rabbitmqctl") is None:
        return False
    try:
        with socket.create_connection(("127.0.0.1", AMQP_PORT), timeout=1):
            return True
    except OSError:
        return False


def _ctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=CTL_TIMEOUT_S)


class RabbitVhost:
    """A vhost named ``dagflow-test-<random>`` that ``guest`` may use."""

    def __init__(self) -> None:
        self.name = f"dagflow-test-{uuid.uuid4().hex[:12]}"
        _ctl("add_vhost", self.name)
        _ctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")

    @property
    def url(self) -> str:
        """The broker URL of this vhost."""
        return f"amqp://guest:guest@127.0.0.1:{AMQP_PORT}/{self.name}"

    def delete(self) -> None:
        """Delete the vhost and everything in it."""
        _ctl("delete_vhost", self.name)
