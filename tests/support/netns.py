"""A second network host on this machine: a network namespace joined to it by a veth pair.

A test that must show dagflow working across hosts (workers that share Redis and nothing
else, a link that is cut) makes a :class:`NetNamespace`: a namespace of its own, a veth
pair with one end in it, and a /30 from ``10.231.0.0/16`` on the pair. Processes run in it
with :attr:`NetNamespace.prefix` (``ip netns exec NAME``); they see the host only through
the veth. Names and the subnet are derived from the test process's pid, so two runs of the
suite do not collide, and nothing outside the pair is ever configured.

It needs root and ``ip`` (iproute2); :func:`netns_unavailable` says why it cannot be made.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from types import TracebackType

#: Seconds any one ``ip`` command may take.
IP_TIMEOUT_S = 10.0
#: The /30 blocks of 10.231.0.0/16 a namespace's pair may get.
BLOCKS = 16_384


def netns_unavailable() -> str | None:
    """Why namespaces cannot be made here (not root, no ``ip``), or None if they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "ip (iproute2) is not installed"
    return None


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=False
    )


class NetNamespace:
    """A namespace ``df-<pid>-<n>`` and veth pair ``dfh<pid>-<n>`` (host) / ``dfn...`` (inside).

    Use it as a context manager: it is deleted on exit, whatever happened.

    Attributes:
        name: The namespace's name (for ``ip netns exec``).
        host_dev: The veth end on the host; setting it down cuts the link.
        host_addr: The host end's address (bind servers the namespace must reach here).
        ns_addr: The address inside the namespace.
    """

    _made = 0

    def __init__(self) -> None:
        NetNamespace._made += 1
        pid, n = os.getpid(), NetNamespace._made
        self.name = f"df-{pid}-{n}"
        # Interface names are at most 15 characters.
        tag = f"{pid % 100_000}{n % 10}"
        self.host_dev, self.ns_dev = f"dfh{tag}", f"dfn{tag}"
        self._block = (pid * 8 + n) % BLOCKS
        self.host_addr, self.ns_addr = _pair(self._block)
        self.created = False

    @property
    def prefix(self) -> tuple[str, ...]:
        """The command prefix that runs a program inside the namespace."""
        return ("ip", "netns", "exec", self.name)

    def create(self) -> None:
        """Make the namespace and the pair, address both ends, bring them and ``lo`` up.

        Raises:
            RuntimeError: An ``ip`` command failed (what is made so far is deleted).
        """
        self._run("netns", "add", self.name)
        self.created = True
        for _ in range(BLOCKS):  # skip a /30 that another run of the suite uses right now
            if not _ip("-o", "addr", "show", "to", f"{self.host_addr}/30").stdout.strip():
                break
            self._block = (self._block + 1) % BLOCKS
            self.host_addr, self.ns_addr = _pair(self._block)
        steps = [
            ("link", "add", self.host_dev, "type", "veth", "peer", "name", self.ns_dev),
            ("link", "set", self.ns_dev, "netns", self.name),
            ("addr", "add", f"{self.host_addr}/30", "dev", self.host_dev),
            ("link", "set", self.host_dev, "up"),
            ("-n", self.name, "addr", "add", f"{self.ns_addr}/30", "dev", self.ns_dev),
            ("-n", self.name, "link", "set", self.ns_dev, "up"),
            ("-n", self.name, "link", "set", "lo", "up"),
        ]
        try:
            for step in steps:
                self._run(*step)
        except RuntimeError:
            self.delete()
            raise

    def cut(self) -> None:
        """Cut the link: set the host end down (both ends lose carrier)."""
        self._run("link", "set", self.host_dev, "down")

    def restore(self) -> None:
        """Set the host end up again."""
        self._run("link", "set", self.host_dev, "up")

    def delete(self) -> None:
        """Delete the pair and the namespace (each only if it exists; never raises)."""
        # Deleting one end of a veth deletes both at once; deleting the namespace alone
        # would destroy its end (and so the pair) only later, asynchronously.
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            if _ip("link", "show", self.host_dev).returncode == 0:
                _ip("link", "del", self.host_dev)
            if self.created:
                _ip("netns", "del", self.name)
        self.created = False

    def _run(self, *args: str) -> None:
        proc = _ip(*args)
        if proc.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")

    def __enter__(self) -> NetNamespace:
        self.create()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.delete()

    def __repr__(self) -> str:
        return f"NetNamespace({self.name!r}, {self.host_addr} <-> {self.ns_addr})"


def _pair(block: int) -> tuple[str, str]:
    """The host and namespace addresses of /30 number ``block`` of 10.231.0.0/16."""
    base = (10 << 24) | (231 << 16) | (block << 2)
    return _dotted(base + 1), _dotted(base + 2)


def _dotted(address: int) -> str:
    return ".".join(str((address >> shift) & 0xFF) for shift in (24, 16, 8, 0))
