"""A non-loopback address on this machine that the API server will proxy to, and nothing else.

The API server refuses to proxy `/api/v1/nodes/NODE/proxy/...` to a node whose address is not
global unicast (loopback, link-local): a gateway advertising 127.0.0.1 works for `kubectl logs`
and `exec` but not for the node proxy. A real network address would send test traffic off the
machine, so this makes one that cannot: a TEST-NET-2 address (198.51.100.0/24, RFC 5737, never
routed) on one end of a veth pair whose other end goes nowhere. Traffic to it stays in this
host's local routing table, like loopback traffic.

Needs root (CAP_NET_ADMIN) and `ip` (iproute2). Every interface is named `wlk<pid>` after the
process that made it and a per-process count (`wlk<pid>n<k>`; two addresses of one process
never share a name), so interfaces left by a killed process are removed by the next one.

    with NodeAddress.create() as address:   # raises NodeAddressUnavailable with the reason
        ... address.ip ...                   # e.g. "198.51.100.23"
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import itertools
import os
import random
import re
import shutil
import subprocess
from dataclasses import dataclass
from types import TracebackType

# TEST-NET-2: this machine's own network may use TEST-NET-1 (192.0.2.0/24), as this one does.
TEST_NET = ipaddress.ip_network("198.51.100.0/24")
_PREFIX = "wlk"
_made = itertools.count()  # interfaces made by this process


class NodeAddressUnavailable(RuntimeError):
    """No test address can be made here (not root, no iproute2, no veth support)."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise NodeAddressUnavailable(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}")
    return result


def _remove_stale() -> None:
    """Interfaces whose creating process is gone (a SIGKILLed test session)."""
    listing = _ip("-o", "link", "show", check=False).stdout
    for name, pid_text in set(re.findall(rf"\d+: ({_PREFIX}(\d+)(?:n\d+)?)[@:]", listing)):
        pid = int(pid_text)
        if pid != os.getpid() and not os.path.exists(f"/proc/{pid}"):
            _ip("link", "del", name, check=False)


def _addresses_in_use() -> set[str]:
    listing = _ip("-o", "-4", "addr", "show", check=False).stdout
    return set(re.findall(r"inet (198\.51\.100\.\d+)/", listing))


@dataclass
class NodeAddress:
    ip: str
    interface: str

    @classmethod
    def create(cls) -> NodeAddress:
        if shutil.which("ip") is None:
            raise NodeAddressUnavailable("`ip` (iproute2) is not installed")
        if os.geteuid() != 0:
            raise NodeAddressUnavailable("making a test address needs root (CAP_NET_ADMIN)")
        _remove_stale()
        interface = f"{_PREFIX}{os.getpid()}n{next(_made)}"
        _ip("link", "del", interface, check=False)
        _ip("link", "add", interface, "type", "veth", "peer", "name", f"{interface}p")
        try:
            used = _addresses_in_use()
            free = [str(h) for h in TEST_NET.hosts() if str(h) not in used]
            if not free:
                raise NodeAddressUnavailable("every 198.51.100.0/24 address is in use here")
            ip = random.choice(free)
            _ip("addr", "add", f"{ip}/32", "dev", interface)
            _ip("link", "set", f"{interface}p", "up")
            _ip("link", "set", interface, "up")
        except BaseException:
            _ip("link", "del", interface, check=False)
            raise
        return cls(ip, interface)

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            _ip("link", "del", self.interface, check=False)

    def __enter__(self) -> NodeAddress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()


class _Shared:
    address: NodeAddress | None = None
    problem: str | None = None


def shared_node_address() -> NodeAddress | None:
    """This process's one test address, made on first use and removed at exit; None when it
    cannot be made (`shared_problem()` says why)."""
    if _Shared.address is None and _Shared.problem is None:
        try:
            _Shared.address = NodeAddress.create()
        except NodeAddressUnavailable as exc:
            _Shared.problem = str(exc)
        else:
            atexit.register(_Shared.address.remove)
    return _Shared.address


def shared_problem() -> str:
    return _Shared.problem or ""
