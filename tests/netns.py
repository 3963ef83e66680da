"""Network partitions for tests: one extra "machine" in a Linux network namespace.

``isolated_host()`` makes a namespace joined to the root namespace by two veth pairs, each its own
/30 from 10.200.0.0/16: the *broker link* (a test broker listens on ``host.broker_ip``, the root
side) and the *hub link* (a hub simulator listens on ``host.hub_ip``). A process started with
``host.command(...)`` runs inside the namespace and reaches only those two addresses: the
namespace has no default route.

``host.partition_broker()`` cuts the broker link silently, like a pulled cable: the root-side veth
goes down, so whatever either side sends is dropped, no RST and no ICMP reaches anyone, and
established TCP connections live on (their retransmissions deliver after ``heal_broker()``). Two
details make the cut silent and keep it inside this machine:

* The namespace side has a permanent neighbour entry for the root side. Without it, ARP for the
  broker fails after ~3 s during a cut and the kernel answers a new ``connect()`` with
  EHOSTUNREACH (a local "no route to host"), which a real partition beyond the LAN never says.
* The root namespace has a blackhole route for each link's subnet (a high metric, under the
  link's own route). Without it, while the root-side veth is down its connected route is gone
  and the root namespace would route replies to the namespace's address out of the default
  route, i.e. off this machine.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

POOL = ipaddress.IPv4Network("10.200.0.0/16")
"""Where the links' subnets are drawn from."""
BLACKHOLE_METRIC = 4_000_000_000
"""The blackhole routes' metric: below (after) any route a link brings up."""
PREFIX = "aqm-"
"""Namespaces made here are named ``aqm-<8 hex digits>``."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS``; with ``check``, raise RuntimeError with ip's message when it fails."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done


@functools.cache
def netns_available() -> str | None:
    """None if namespaces and veth pairs can be made here, else why not (for ``pytest.skip``)."""
    if not shutil.which("ip"):
        return "the ip command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"{PREFIX}probe-{secrets.token_hex(4)}"
    veth = f"aqmp{secrets.token_hex(4)}"
    try:
        made = _ip("netns", "add", probe, check=False)
        if made.returncode != 0:
            return f"cannot create a network namespace: {made.stderr.strip()}"
        made = _ip("link", "add", veth, "type", "veth", "peer", "name", "p0", "netns", probe,
                   check=False)
        if made.returncode != 0:
            return f"cannot create a veth pair: {made.stderr.strip()}"
        return None
    finally:
        _ip("link", "del", veth, check=False)
        _ip("netns", "del", probe, check=False)


def _taken_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 address (``ip -o addr``) and route destination of the root namespace."""
    taken: list[ipaddress.IPv4Network] = []
    for line in _ip("-o", "-4", "addr", "show").stdout.splitlines():
        words = line.split()
        if "inet" in words:
            taken.append(ipaddress.IPv4Interface(words[words.index("inet") + 1]).network)
    for route in json.loads(_ip("-j", "-4", "route", "show", "table", "all").stdout or "[]"):
        with contextlib.suppress(KeyError, ValueError):
            taken.append(ipaddress.IPv4Network(route["dst"], strict=False))
    return taken


def _free_subnet(also_taken: list[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    """A random /30 of POOL that overlaps no address or route here (nor ``also_taken``)."""
    taken = _taken_networks() + also_taken
    subnets = POOL.num_addresses // 4
    for _ in range(200):
        start = int(POOL.network_address) + 4 * random.randrange(subnets)
        candidate = ipaddress.IPv4Network((start, 30))
        if not any(candidate.overlaps(net) for net in taken):
            return candidate
    raise RuntimeError(f"no free /30 in {POOL}")


@dataclass(frozen=True)
class Link:
    """One veth pair between the root namespace and the host's namespace."""

    root_if: str
    """The root-side interface (``aqm<hex><letter>``)."""
    ns_if: str
    """The interface's name inside the namespace (``broker`` or ``hub``)."""
    subnet: ipaddress.IPv4Network
    root_ip: str
    ns_ip: str


@dataclass
class Host:
    """An extra machine: a network namespace with a broker link and a hub link to the root one."""

    name: str
    """The namespace's name (``ip netns exec NAME ...``)."""
    broker: Link
    hub: Link
    broker_partitioned: bool = field(default=False, init=False)

    @property
    def broker_ip(self) -> str:
        """Root-side address of the broker link: where a test broker listens."""
        return self.broker.root_ip

    @property
    def hub_ip(self) -> str:
        """Root-side address of the hub link: where a hub simulator listens."""
        return self.hub.root_ip

    @property
    def ns_broker_ip(self) -> str:
        """The namespace's own address on the broker link (the broker sees connections from it)."""
        return self.broker.ns_ip

    @property
    def ns_hub_ip(self) -> str:
        """The namespace's own address on the hub link."""
        return self.hub.ns_ip

    def command(self, *argv: str) -> list[str]:
        """``argv`` prefixed so that the subprocess runs inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def pids(self) -> list[int]:
        """The processes running inside the namespace now."""
        return [int(pid) for pid in _ip("netns", "pids", self.name).stdout.split()]

    def partition_broker(self) -> None:
        """Cut the broker link silently: every packet either way is lost from now on."""
        _ip("link", "set", self.broker.root_if, "down")
        self.broker_partitioned = True

    def heal_broker(self, timeout: float = 5.0) -> None:
        """Restore the broker link; return once both sides of it carry packets again."""
        _ip("link", "set", self.broker.root_if, "up")
        deadline = time.monotonic() + timeout
        # The kernel reports carrier-on asynchronously (linkwatch): poll both sides' state.
        while not (self._operstate(None, self.broker.root_if) == "UP"
                   and self._operstate(self.name, self.broker.ns_if) == "UP"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the broker link of {self.name} is not up after {timeout} s")
            time.sleep(0.01)
        self.broker_partitioned = False

    @staticmethod
    def _operstate(netns: str | None, interface: str) -> str:
        where = ["-n", netns] if netns else []
        shown = json.loads(_ip(*where, "-j", "link", "show", "dev", interface).stdout)
        return str(shown[0].get("operstate", ""))

    def kill_all(self, timeout: float = 5.0) -> None:
        """SIGKILL every process inside the namespace and wait until none is left."""
        deadline = time.monotonic() + timeout
        while pids := self.pids():
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes {pids} in {self.name} survive SIGKILL")
            time.sleep(0.01)


def _add_link(stack: contextlib.ExitStack, netns: str, root_if: str, ns_if: str,
              subnet: ipaddress.IPv4Network) -> Link:
    """Make a veth pair into ``netns`` on ``subnet``; ``stack`` undoes it."""
    root_ip, ns_ip = (str(subnet.network_address + n) for n in (1, 2))
    _ip("link", "add", root_if, "type", "veth", "peer", "name", ns_if, "netns", netns)
    stack.callback(_ip, "link", "del", root_if, check=False)
    _ip("route", "add", "blackhole", str(subnet), "metric", str(BLACKHOLE_METRIC))
    stack.callback(_ip, "route", "del", "blackhole", str(subnet), "metric",
                   str(BLACKHOLE_METRIC), check=False)
    _ip("addr", "add", f"{root_ip}/{subnet.prefixlen}", "dev", root_if)
    _ip("-n", netns, "addr", "add", f"{ns_ip}/{subnet.prefixlen}", "dev", ns_if)
    with open(f"/sys/class/net/{root_if}/address") as file:
        root_mac = file.read().strip()
    _ip("-n", netns, "neigh", "replace", root_ip, "lladdr", root_mac, "dev", ns_if,
        "nud", "permanent")
    _ip("link", "set", root_if, "up")
    _ip("-n", netns, "link", "set", ns_if, "up")
    return Link(root_if=root_if, ns_if=ns_if, subnet=subnet, root_ip=root_ip, ns_ip=ns_ip)


@contextlib.contextmanager
def isolated_host() -> Iterator[Host]:
    """A fresh :class:`Host` for the block; afterwards (even after a failure) every process in it
    is killed and its namespace, veth pairs and routes are gone."""
    tag = secrets.token_hex(4)
    name = f"{PREFIX}{tag}"
    with contextlib.ExitStack() as stack:
        _ip("netns", "add", name)
        stack.callback(_ip, "netns", "del", name, check=False)
        _ip("-n", name, "link", "set", "lo", "up")
        broker_net = _free_subnet([])
        broker = _add_link(stack, name, f"aqm{tag}b", "broker", broker_net)
        hub = _add_link(stack, name, f"aqm{tag}h", "hub", _free_subnet([broker_net]))
        host = Host(name=name, broker=broker, hub=hub)
        stack.callback(host.kill_all)  # runs first: nothing is left to hold the namespace
        yield host
