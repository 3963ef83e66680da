"""The partition harness of tests/netns.py: a client in a namespace, servers in the root one.

A cut of the broker link must be silent (nothing arrives either way, no reset, a new connection
hangs rather than fails), leave the hub link alone, and heal into the *same* TCP connection
delivering what was sent during the cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.mosquitto import free_port, running_mosquitto
from tests.netns import Host, isolated_host, netns_available

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(netns_available() is not None, reason=str(netns_available())),
]

CUT = 3.0
"""How long a cut lasts, and how long the tests wait to show that nothing crosses it."""
RECOVERY = 8.0
"""The longest wait for retransmissions after a heal (TCP backs off: 0.2, 0.4, ... 3.2 s)."""

# Runs inside the namespace: connects to each NAME=IP:PORT of argv, then obeys stdin lines
# "send NAME TEXT" (answers "sent NAME TEXT") and "probe NAME SECONDS" (a new connection, answers
# "probe NAME ok|timeout|error ERRNO"); prints "recv NAME TEXT" for every line a server sends.
CLIENT = r"""
import socket, sys, threading
lock = threading.Lock()
def say(line):
    with lock:
        print(line, flush=True)
targets = dict((n, (a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])))
               for n, a in (arg.split("=", 1) for arg in sys.argv[1:]))
socks = dict((n, socket.create_connection(addr, timeout=5)) for n, addr in targets.items())
def read(name, sock):
    sock.settimeout(None)
    for line in sock.makefile("r"):
        say("recv %s %s" % (name, line.rstrip("\n")))
    say("eof %s" % name)
def probe(name, seconds):
    try:
        socket.create_connection(targets[name], timeout=seconds).close()
        say("probe %s ok" % name)
    except socket.timeout:
        say("probe %s timeout" % name)
    except OSError as error:
        say("probe %s error %s" % (name, error.errno))
for name, sock in socks.items():
    threading.Thread(target=read, args=(name, sock), daemon=True).start()
say("connected")
for line in sys.stdin:
    verb, name, rest = line.rstrip("\n").split(" ", 2)
    if verb == "send":
        socks[name].sendall((rest + "\n").encode())
        say("sent %s %s" % (name, rest))
    else:
        threading.Thread(target=probe, args=(name, float(rest)), daemon=True).start()
"""


class Lines:
    """Lines seen so far, and a way to await one."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._changed = asyncio.Condition()

    async def add(self, line: str) -> None:
        async with self._changed:
            self.seen.append(line)
            self._changed.notify_all()

    async def wait(self, line: str, timeout: float, count: int = 1) -> float:
        """Wait until ``line`` was seen (``count`` times); return how long that took."""
        start = time.monotonic()
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: self.seen.count(line) >= count)
        return time.monotonic() - start

    async def absent_for(self, line: str, seconds: float) -> None:
        """Assert that ``line`` does not arrive within ``seconds``.

        A bounded wait is the only way to show that nothing arrives: it is not synchronisation.
        """
        with pytest.raises(TimeoutError):
            await self.wait(line, seconds)


class LineServer:
    """A TCP server in the root namespace that records its clients' lines and can answer them."""

    def __init__(self) -> None:
        self.lines = Lines()
        self.writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self, address: str) -> str:
        """Listen on ``address``; return ``ADDRESS:PORT``."""
        self._server = await asyncio.start_server(self._serve, address, 0)
        return f"{address}:{self._server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        await self.lines.add("<accepted>")
        while line := await reader.readline():
            await self.lines.add(line.decode().rstrip("\n"))

    async def send(self, text: str) -> None:
        """Send ``text`` to the first client."""
        self.writers[0].write(f"{text}\n".encode())
        await self.writers[0].drain()

    async def stop(self) -> None:
        for writer in self.writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class NsClient:
    """The CLIENT script, running inside the host's namespace."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines = Lines()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, host: Host, **targets: str) -> NsClient:
        process = await asyncio.create_subprocess_exec(
            *host.command(sys.executable, "-c", CLIENT,
                          *(f"{name}={addr}" for name, addr in targets.items())),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        client = cls(process)
        await client.lines.wait("connected", 10)
        return client

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            await self.lines.add(line.decode().rstrip("\n"))

    async def command(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{line}\n".encode())
        await self.process.stdin.drain()

    async def send(self, name: str, text: str) -> None:
        """Send a line to server ``name``; return once the client has handed it to its socket."""
        await self.command(f"send {name} {text}")
        await self.lines.wait(f"sent {name} {text}", 5)

    async def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        await self.process.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@pytest.fixture
def host() -> Iterator[Host]:
    with isolated_host() as made:
        yield made


@contextlib.asynccontextmanager
async def serving(address: str) -> AsyncIterator[tuple[LineServer, str]]:
    server = LineServer()
    where = await server.start(address)
    try:
        yield server, where
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def client_in(host: Host, **targets: str) -> AsyncIterator[NsClient]:
    client = await NsClient.start(host, **targets)
    try:
        yield client
    finally:
        await client.stop()


async def test_a_cut_is_silent_and_the_same_connection_delivers_after_the_heal(
        host: Host) -> None:
    async with serving(host.broker_ip) as (broker, where), client_in(host, broker=where) as client:
        await client.send("broker", "before")
        await broker.lines.wait("before", 5)
        await broker.send("to-client before")
        await client.lines.wait("recv broker to-client before", 5)

        host.partition_broker()
        await client.send("broker", "during")
        await broker.send("to-client during")
        await client.command(f"probe broker {CUT + 0.5}")  # a new connection during the cut
        await broker.lines.absent_for("during", CUT)
        assert "recv broker to-client during" not in client.lines.seen
        assert broker.lines.seen.count("<accepted>") == 1
        # the root namespace routes nothing for the namespace off this machine (the blackhole)
        lookup = await asyncio.create_subprocess_exec(
            "ip", "route", "get", host.ns_broker_ip, "from", host.broker_ip,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert await lookup.wait() != 0
        # silent: the new connection hangs until its own timeout, no "no route to host" or reset
        await client.lines.wait("probe broker timeout", 2)
        assert not [line for line in client.lines.seen if line.startswith("eof")]

        host.heal_broker()
        took = await broker.lines.wait("during", RECOVERY)
        await client.lines.wait("recv broker to-client during", RECOVERY)
        print(f"the line sent during the cut arrived {took:.2f} s after the heal")
        await client.send("broker", "after")
        await broker.lines.wait("after", 2)
        assert broker.lines.seen.count("<accepted>") == 1  # the same connection throughout
        assert broker.lines.seen == ["<accepted>", "before", "during", "after"]


async def test_the_hub_link_works_while_the_broker_link_is_cut(host: Host) -> None:
    async with serving(host.broker_ip) as (broker, at_broker), \
            serving(host.hub_ip) as (hub, at_hub), \
            client_in(host, broker=at_broker, hub=at_hub) as client:
        host.partition_broker()
        await client.send("broker", "lost for now")
        await client.send("hub", "during the cut")
        assert await hub.lines.wait("during the cut", 1) < 1
        await client.command("probe hub 2")
        await client.lines.wait("probe hub ok", 2)
        await hub.lines.wait("<accepted>", 1, count=2)
        assert "lost for now" not in broker.lines.seen

        host.heal_broker()
        await broker.lines.wait("lost for now", RECOVERY)


def test_a_broker_listens_on_loopback_and_on_the_broker_link() -> None:
    with isolated_host() as host:
        port = free_port(host.broker_ip)
        with running_mosquitto(extra_config=f"listener {port} {host.broker_ip}\n") as mosquitto:
            # MQTT 3.1.1 CONNECT, clean session, empty client id; CONNACK accepted is 20 02 00 00
            connect = "b'\\x10\\x0c\\x00\\x04MQTT\\x04\\x02\\x00\\x3c\\x00\\x00'"
            answer = subprocess.run(host.command(
                sys.executable, "-c",
                f"import socket; s = socket.create_connection(('{host.broker_ip}', {port}), 5);"
                f" s.sendall({connect}); print(s.recv(4).hex())"),
                capture_output=True, text=True, timeout=10, check=True)
            assert answer.stdout.strip() == "20020000"
            with socket.create_connection(("127.0.0.1", mosquitto.port), 5) as sock:
                sock.sendall(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")
                assert sock.recv(4) == b"\x20\x02\x00\x00"


def test_leaving_the_block_cleans_up_even_after_a_failure() -> None:
    made: list[tuple[Host, subprocess.Popen[bytes]]] = []

    def failing_test() -> None:
        with isolated_host() as host:
            sleeper = subprocess.Popen(host.command(
                sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)"),
                stdout=subprocess.PIPE)
            made.append((host, sleeper))
            assert sleeper.stdout is not None
            assert sleeper.stdout.readline() == b"ready\n"
            assert host.pids() == [sleeper.pid]
            raise RuntimeError("the test failed")

    with pytest.raises(RuntimeError, match="the test failed"):
        failing_test()
    [(host, sleeper)] = made
    assert sleeper.wait(5) == -signal.SIGKILL
    assert sleeper.stdout is not None
    sleeper.stdout.close()
    assert host.name not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                           text=True, check=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    routes = subprocess.run(["ip", "route", "show", "table", "all"], capture_output=True,
                            text=True, check=True).stdout
    for link in (host.broker, host.hub):
        assert link.root_if not in links
        assert str(link.subnet) not in routes
