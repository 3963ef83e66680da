"""Real MQTT brokers other than Mosquitto, each on free loopback ports, for the integration tests.

Each broker runs from its own package, listens on 127.0.0.1 only and keeps everything it writes
(config, data, logs, Erlang cookie) in a private work directory, so the machine's system services
(Mosquitto on 1883, RabbitMQ on 5672, NATS on 4222, epmd on 4369) are never used or touched:

- :class:`Nats` (Debian ``nats-server``): MQTT listener over JetStream; :class:`NatsCluster` is a
  3-node JetStream cluster whose MQTT streams have 3 replicas (one node can be SIGKILLed).
- :class:`RabbitMq` (Debian ``rabbitmq-server``): a node of its own (own node name, ports, mnesia,
  logs, plugins file with ``rabbitmq_mqtt`` only, its own epmd on a free port).
- :class:`Ejabberd` (Debian ``ejabberd``) with ``mod_mqtt``: a node of its own run as the
  ``ejabberd`` user, Erlang distribution on a free port without epmd. mod_mqtt authenticates every
  client against ejabberd's users (an empty password is refused), so it registers a user and
  exposes :attr:`Broker.username` / :attr:`Broker.password`.
- :class:`Aedes` (npm ``aedes``, tests/node/aedes_broker.mjs, run with ``node``).
- :class:`Amqtt` (PyPI ``amqtt``, in its own venv ``.venv-amqtt``).

Every broker has ``start()``, ``stop()``, ``restart()`` (same ports, same data), ``url``, ``name``,
``version`` (as the package reports it, known once started), ``started_in`` (seconds the last start
took) and is a context manager; the ``running_*`` functions add a temporary work directory.
``start()`` returns once a real MQTT CONNECT gets its CONNACK (a cluster: once a retained message
makes a round trip through every node). A missing broker raises :class:`BrokerNotInstalled`, which
names the install step: the tests never skip for lack of a broker.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from tests.mosquitto import free_port

__all__ = [
    "Aedes", "Amqtt", "Broker", "BrokerNotInstalled", "Ejabberd", "Mqtt5Answer", "Nats",
    "NatsCluster", "RabbitMq", "connack", "free_port", "mqtt5_answer", "retained_round_trip",
    "running_aedes", "running_amqtt", "running_ejabberd", "running_nats", "running_nats_cluster",
    "running_rabbitmq",
]

REPO = Path(__file__).resolve().parent.parent
NODE_PROJECT = REPO / "tests" / "node"
INSTALL = "scripts/test.sh"
HOST = "127.0.0.1"


class BrokerNotInstalled(RuntimeError):
    """A broker's program is missing; the message names the install step."""


class BrokerError(RuntimeError):
    """A broker did not start (its log's tail is in the message) or did not stop."""


def _require(path: Path | str, what: str) -> str:
    if not Path(path).exists():
        raise BrokerNotInstalled(f"{path} not found: {what} (run {INSTALL}, which installs it)")
    return str(path)


# --- MQTT probes ---------------------------------------------------------------------------------

def _client(username: str | None, password: str | None,
            protocol: MQTTProtocolVersion = paho.MQTTv311) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"aqtest-{uuid.uuid4().hex[:12]}",
                         protocol=protocol)
    if username is not None:
        client.username_pw_set(username, password)
    return client


def _pump(client: paho.Client, done: Callable[[], bool], deadline: float) -> bool:
    """Run paho's network loop in this thread until ``done()``; False on timeout or hang-up."""
    while not done():
        if time.monotonic() > deadline:
            return False
        if client.loop(0.05) != paho.MQTT_ERR_SUCCESS:
            return done()
    return True


def connack(port: int, username: str | None = None, password: str | None = None,
            timeout: float = 3.0) -> bool:
    """True when an MQTT 3.1.1 CONNECT to ``port`` is accepted by a CONNACK within ``timeout``."""
    accepted: list[bool] = []
    client = _client(username, password)
    client.on_connect = lambda _c, _u, _f, rc, _p: accepted.append(not rc.is_failure)
    try:
        client.connect(HOST, port, keepalive=30)
    except OSError:
        return False
    try:
        return _pump(client, lambda: bool(accepted), time.monotonic() + timeout) and accepted[0]
    finally:
        with contextlib.suppress(Exception):
            client.disconnect()
        client.loop(0.01)


def retained_round_trip(port: int, username: str | None = None, password: str | None = None,
                        timeout: float = 5.0, topic: str | None = None,
                        read_port: int | None = None) -> bool:
    """Publish a retained QoS 1 message on ``port``, receive it as retained on ``read_port``
    (default the same) with an exact-topic subscription, then clear it. True when it all worked
    within ``timeout``: the broker (a cluster's JetStream too) really serves MQTT."""
    deadline = time.monotonic() + timeout
    topic = topic or f"aqtest/ready/{uuid.uuid4().hex}"
    payload = uuid.uuid4().hex.encode()
    writer, reader = _client(username, password), _client(username, password)
    state: dict[str, Any] = {"w": None, "r": None, "acked": set(), "sub": False, "got": False}
    writer.on_connect = lambda _c, _u, _f, rc, _p: state.__setitem__("w", not rc.is_failure)
    reader.on_connect = lambda _c, _u, _f, rc, _p: state.__setitem__("r", not rc.is_failure)
    writer.on_publish = lambda _c, _u, mid, _rc, _p: state["acked"].add(mid)
    reader.on_subscribe = lambda _c, _u, _m, rcs, _p: state.__setitem__(
        "sub", all(not rc.is_failure for rc in rcs))

    def on_message(_c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        if msg.payload == payload and msg.retain:
            state["got"] = True

    reader.on_message = on_message
    try:
        writer.connect(HOST, port, keepalive=30)
        if not _pump(writer, lambda: state["w"] is not None, deadline) or not state["w"]:
            return False
        mid = writer.publish(topic, payload, 1, retain=True).mid
        if not _pump(writer, lambda: mid in state["acked"], deadline):
            return False
        reader.connect(HOST, read_port or port, keepalive=30)
        if not _pump(reader, lambda: state["r"] is not None, deadline) or not state["r"]:
            return False
        reader.subscribe(topic, 1)
        if not _pump(reader, lambda: state["got"], deadline):
            return False
        clear = writer.publish(topic, b"", 1, retain=True).mid
        return _pump(writer, lambda: clear in state["acked"], deadline)
    except OSError:
        return False
    finally:
        for client in (writer, reader):
            with contextlib.suppress(Exception):
                client.disconnect()
                client.loop(0.01)
            sock = client.socket()
            if sock is not None:
                sock.close()


@dataclass(frozen=True)
class Mqtt5Answer:
    """What a broker answered to an MQTT 5 CONNECT (see :func:`mqtt5_answer`)."""

    kind: str
    """``"connack5"`` (an MQTT 5 CONNACK), ``"connack311"`` (a 3.1.1-style 2-byte CONNACK),
    ``"closed"`` (hung up without a CONNACK) or ``"silent"`` (nothing within the timeout)."""
    code: int | None = None
    """The CONNACK's reason code (MQTT 5) or return code (3.1.1)."""
    raw: bytes = b""


def mqtt5_answer(port: int, username: str | None = None, password: str | None = None,
                 timeout: float = 3.0) -> Mqtt5Answer:
    """Send a bare MQTT 5 CONNECT (clean start, no properties) and classify the answer."""

    def utf8(text: str) -> bytes:
        data = text.encode()
        return len(data).to_bytes(2, "big") + data

    flags = 0x02 | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    body = b"\x00\x04MQTT\x05" + bytes([flags]) + (30).to_bytes(2, "big") + b"\x00"
    body += utf8(f"aqtest5-{uuid.uuid4().hex[:8]}")
    if username is not None:
        body += utf8(username)
    if password is not None:
        body += utf8(password)
    assert len(body) < 128
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(bytes([0x10, len(body)]) + body)
        try:
            raw = sock.recv(256)
        except TimeoutError:
            return Mqtt5Answer("silent")
        except ConnectionResetError:
            return Mqtt5Answer("closed")
    if not raw:
        return Mqtt5Answer("closed")
    if raw[0] != 0x20 or len(raw) < 4:
        return Mqtt5Answer("other", raw=raw)
    if raw[1] == 2:
        return Mqtt5Answer("connack311", raw[3], raw)
    return Mqtt5Answer("connack5", raw[3], raw)


# --- processes -----------------------------------------------------------------------------------

def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies waiting to be reaped excepted)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def _spawn(argv: list[str], log: Path, env: dict[str, str] | None = None,
           cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a process group of its own (its children too), output to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                                start_new_session=True)


def _stop_group(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM,
                timeout: float = 20.0) -> None:
    """Signal the process group, wait for every member to exit; SIGKILL after ``timeout``."""
    if process is None:
        return
    pgid = process.pid  # start_new_session: the leader's pid is the group id
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(0.05)
        if process.returncode is not None and not _group_alive(pgid):
            return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    process.wait()
    while _group_alive(pgid):
        time.sleep(0.05)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_until(check: Callable[[], bool], timeout: float, what: str,
                process: subprocess.Popen[bytes] | None, log: Path,
                interval: float = 0.05) -> None:
    """Poll ``check`` until it holds; BrokerError (with the log's tail) on timeout or exit."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise BrokerError(f"{what}: the process exited with {process.returncode}\n{_tail(log)}")
        if check():
            return
        if time.monotonic() > deadline:
            raise BrokerError(f"{what}: not ready within {timeout:.0f} s\n{_tail(log)}")
        time.sleep(interval)


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.2):
        return True
    return False


# --- the brokers ---------------------------------------------------------------------------------

@dataclass
class Broker:
    """A broker process on ``port`` with its data under ``workdir``."""

    name: ClassVar[str] = "broker"
    start_timeout: ClassVar[float] = 30.0

    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    version: str = ""
    """The version the package reports; set by :meth:`start`."""
    started_in: float = 0.0
    """Seconds the last :meth:`start` took, until MQTT was served."""
    username: str | None = None
    password: str | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{HOST}:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name.lower()}.log"

    def start(self) -> None:
        began = time.monotonic()
        try:
            self._launch()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - began

    def stop(self) -> None:
        _stop_group(self.process)
        self.process = None
        self._after_stop()

    def restart(self) -> None:
        self.stop()
        self.start()

    def connack(self, timeout: float = 3.0) -> bool:
        return connack(self.port, self.username, self.password, timeout)

    def _launch(self) -> None:
        raise NotImplementedError

    def _wait_ready(self) -> None:
        _wait_until(self.connack, self.start_timeout, f"{self.name} on {self.port}", self.process,
                    self.log)

    def _after_stop(self) -> None:
        pass

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


NATS_SERVER = "/usr/sbin/nats-server"


def _nats_version() -> str:
    binary = _require(NATS_SERVER, "the Debian package nats-server")
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    return out.strip().rsplit("v", 1)[-1]


@dataclass
class Nats(Broker):
    """nats-server with JetStream and its MQTT listener on ``port``; a cluster node when
    ``routes`` (the cluster's route ports) is set."""

    name: ClassVar[str] = "NATS"

    server_name: str = field(default_factory=lambda: f"aqtest-{uuid.uuid4().hex[:8]}")
    client_port: int = field(default_factory=free_port)
    route_port: int | None = None
    routes: list[int] = field(default_factory=list)
    cluster_name: str = "aqtest"
    stream_replicas: int = 1
    consumer_replicas: int | None = None
    """Replicas of the JetStream consumer behind each QoS 1 subscription (NATS: the streams')"""

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.server_name}.log"

    def config(self) -> str:
        store = self.workdir / self.server_name / "jetstream"
        text = (f'server_name: "{self.server_name}"\nhost: "{HOST}"\nport: {self.client_port}\n'
                f'jetstream {{ store_dir: "{store}", max_memory_store: 256MB }}\n'
                f'mqtt {{ host: "{HOST}", port: {self.port}')
        if self.routes:
            text += f", stream_replicas: {self.stream_replicas}"
        if self.consumer_replicas is not None:
            text += f", consumer_replicas: {self.consumer_replicas}"
        text += " }\n"
        if self.routes:
            routes = ", ".join(f'"nats-route://{HOST}:{p}"' for p in self.routes)
            text += (f'cluster {{ name: "{self.cluster_name}", host: "{HOST}", '
                     f"port: {self.route_port}, no_advertise: true, routes: [{routes}] }}\n")
        return text

    def _launch(self) -> None:
        binary = _require(NATS_SERVER, "the Debian package nats-server")
        self.version = self.version or _nats_version()
        conf = self.workdir / f"{self.server_name}.conf"
        conf.write_text(self.config())
        self.process = _spawn([binary, "-c", str(conf)], self.log)

    def kill(self) -> None:
        """SIGKILL the node: no shutdown, no goodbye to the cluster."""
        _stop_group(self.process, signal.SIGKILL)
        self.process = None


@dataclass
class NatsCluster:
    """Three JetStream nodes routed on loopback; the MQTT streams have 3 replicas, so the cluster
    serves MQTT (retained messages too) with any one node down."""

    workdir: Path
    size: int = 3
    ready_timeout: float = 60.0
    nodes: list[Nats] = field(default_factory=list)
    consumer_replicas: int | None = None
    """None: NATS's default, the streams' replicas (see :class:`Nats`)."""
    started_in: float = 0.0
    name: ClassVar[str] = "NATS cluster"

    def __post_init__(self) -> None:
        if not self.nodes:
            routes = [free_port() for _ in range(self.size)]
            self.nodes = [
                Nats(port=free_port(), workdir=self.workdir, server_name=f"aqtest-n{i + 1}",
                     route_port=routes[i], routes=routes, stream_replicas=self.size,
                     consumer_replicas=self.consumer_replicas)
                for i in range(self.size)]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def version(self) -> str:
        return self.nodes[0].version or _nats_version()

    def start(self) -> None:
        """Start every node at once (JetStream needs a quorum to elect its meta leader), then
        wait until each one passes a retained round trip.

        Once (1 start of ~15, with five other brokers starting, not reproduced in 5 more) a fresh
        cluster's MQTT stayed at "no suitable peers for placement" for a minute: a start that is not
        ready within half of :attr:`ready_timeout` is made again from empty stores, once (the
        first attempt's logs are kept as ``*.attempt1.log``)."""
        began = time.monotonic()
        for attempt in (1, 2):
            try:
                for node in self.nodes:
                    node._launch()
                # in parallel: each node's first MQTT client makes it set up its MQTT streams
                with ThreadPoolExecutor(len(self.nodes)) as pool:
                    futures = [pool.submit(self.wait_node, i, self.ready_timeout / 2)
                               for i in range(len(self.nodes))]
                    for future in futures:
                        future.result()
                break
            except BrokerError:
                self.stop()
                if attempt == 2:
                    raise
                for node in self.nodes:
                    node.log.rename(node.log.with_suffix(".attempt1.log"))
                    shutil.rmtree(self.workdir / node.server_name, ignore_errors=True)
            except BaseException:
                self.stop()
                raise
        self.started_in = time.monotonic() - began

    def wait_node(self, index: int, timeout: float | None = None) -> None:
        """Until node ``index`` serves MQTT through JetStream (bounded: BrokerError after)."""
        node = self.nodes[index]
        deadline = time.monotonic() + (timeout or self.ready_timeout)
        what = f"NATS node {node.server_name}"
        _wait_until(lambda: connack(node.port, timeout=3.0), deadline - time.monotonic(), what,
                    node.process, node.log, interval=0.25)
        _wait_until(lambda: retained_round_trip(node.port, timeout=3.0),
                    deadline - time.monotonic(), what, node.process, node.log, interval=0.25)

    def kill(self, index: int) -> None:
        """SIGKILL node ``index`` (0-based)."""
        self.nodes[index].kill()

    def start_node(self, index: int) -> None:
        """Start node ``index`` again (same ports, same store) and wait until it serves MQTT."""
        node = self.nodes[index]
        try:
            node._launch()
            self.wait_node(index)
        except BaseException:
            node.stop()
            raise

    def stop(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(ProcessLookupError):
                if node.process is not None:
                    os.killpg(node.process.pid, signal.SIGTERM)
        for node in self.nodes:
            node.stop()

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # /usr/sbin's wrapper would `su rabbitmq`
EPMD = "/usr/bin/epmd"


@dataclass
class RabbitMq(Broker):
    """A RabbitMQ node of its own with the MQTT plugin on ``port``: own node name, AMQP and
    distribution ports, mnesia, logs, enabled-plugins file, Erlang cookie and epmd (on a free
    port, killed on stop). The retained-message store lives in its mnesia dir: kept on restart."""

    name: ClassVar[str] = "RabbitMQ"
    start_timeout: ClassVar[float] = 90.0

    node_name: str = field(default_factory=lambda: f"aqtest-{uuid.uuid4().hex[:8]}@localhost")
    amqp_port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    epmd_port: int = field(default_factory=free_port)

    def env(self) -> dict[str, str]:
        w = self.workdir
        return {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(w / "home"),  # the node's .erlang.cookie
            "RABBITMQ_CONF_ENV_FILE": str(w / "rabbitmq-env.conf"),  # not /etc/rabbitmq's
            "RABBITMQ_CONFIG_FILE": str(w / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(w / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(w / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(w / "mnesia"),
            "RABBITMQ_LOG_BASE": str(w / "log"),
            "RABBITMQ_NODENAME": self.node_name,
            "RABBITMQ_NODE_IP_ADDRESS": HOST,
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": HOST,
        }

    def _launch(self) -> None:
        binary = _require(RABBITMQ_SERVER, "the Debian package rabbitmq-server")
        w = self.workdir
        (w / "home").mkdir(exist_ok=True)
        (w / "rabbitmq-env.conf").write_text("")
        (w / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        (w / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = {HOST}:{self.amqp_port}\n"
            f"mqtt.listeners.tcp.default = {HOST}:{self.port}\n"
            "mqtt.allow_anonymous = true\n"
            "log.console = true\nlog.console.level = info\nlog.file.level = info\n")
        self.process = _spawn([binary], self.log, env=self.env(), cwd=w)

    def _wait_ready(self) -> None:
        super()._wait_ready()
        found = re.search(r"RabbitMQ (\d+\.\d+\.\d+)", self.log.read_text(errors="replace"))
        self.version = found.group(1) if found else "unknown"

    def _after_stop(self) -> None:
        # our own epmd, on our own port (never the system's on 4369); it refuses while a node is
        # registered, and ours has exited by now
        if Path(EPMD).exists():
            subprocess.run([EPMD, "-port", str(self.epmd_port), "-kill"], capture_output=True,
                           env={**self.env(), "ERL_EPMD_PORT": str(self.epmd_port)}, check=False)


EJABBERDCTL = "/usr/sbin/ejabberdctl"
EJABBERD_USER = "ejabberd"


@dataclass
class Ejabberd(Broker):
    """ejabberd with mod_mqtt on ``port`` (host ``localhost``), its own node name, config,
    spool and logs, Erlang distribution on ``dist_port`` without epmd, run as the ``ejabberd``
    user. mod_mqtt takes the MQTT username as the user of a JID on ``localhost`` and checks the
    password against ejabberd's users: :meth:`start` registers :attr:`username` once."""

    name: ClassVar[str] = "ejabberd"
    start_timeout: ClassVar[float] = 60.0

    node_name: str = field(default_factory=lambda: f"aqtest-{uuid.uuid4().hex[:8]}@localhost")
    dist_port: int = field(default_factory=free_port)
    username: str | None = "bridge"
    password: str | None = field(default_factory=lambda: secrets.token_hex(12))
    registered: bool = False

    def _ctl(self, *args: str) -> list[str]:
        w = self.workdir
        cmd = ["env", f"HOME={w / 'home'}", _require(EJABBERDCTL, "the Debian package ejabberd"),
               "--config-dir", str(w / "conf"), "--spool", str(w / "spool"), "--logs",
               str(w / "logs"), "--node", self.node_name, *args]
        if os.geteuid() == 0:
            return ["runuser", "-u", EJABBERD_USER, "--", *cmd]
        if pwd.getpwuid(os.geteuid()).pw_name != EJABBERD_USER:
            raise BrokerError("ejabberd runs as root (then as the ejabberd user) or as ejabberd")
        return cmd

    def _launch(self) -> None:
        w = self.workdir
        conf = w / "conf"
        for sub in ("conf", "spool", "logs", "home", "modules"):
            (w / sub).mkdir(exist_ok=True)
        (conf / "ejabberd.yml").write_text(
            "hosts: [localhost]\nloglevel: info\nauth_method: [internal]\n"
            f'listen:\n  - {{port: {self.port}, ip: "{HOST}", module: mod_mqtt, backlog: 128}}\n'
            "modules:\n  mod_mqtt: {}\n")
        (conf / "ejabberdctl.cfg").write_text(
            f"ERL_DIST_PORT={self.dist_port}\nINET_DIST_INTERFACE={HOST}\n"
            f"ERL_EPMD_ADDRESS={HOST}\n"
            'ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0"\n'
            f"CONTRIB_MODULES_PATH={w / 'modules'}\nCONTRIB_MODULES_CONF_DIR={w / 'modules'}\n")
        (conf / "inetrc").write_text('{lookup,["file","native"]}.\n'
                                     '{host,{127,0,0,1}, ["localhost"]}.\n')
        if os.geteuid() == 0:
            user = pwd.getpwnam(EJABBERD_USER)
            for path in [w, *w.rglob("*")]:
                os.chown(path, user.pw_uid, user.pw_gid)
        self.process = _spawn(self._ctl("foreground"), self.log, cwd=w)

    def _wait_ready(self) -> None:
        started = re.compile(r"ejabberd (\S+) is started")
        found: list[str] = []

        def is_started() -> bool:
            match = started.search(self.log.read_text(errors="replace"))
            found.extend([match.group(1)] if match else [])
            return bool(match) and _listening(self.port)

        _wait_until(is_started, self.start_timeout, f"ejabberd on {self.port}", self.process,
                    self.log)
        self.version = found[0]
        if not self.registered:
            assert self.username is not None
            assert self.password is not None
            done = subprocess.run(self._ctl("register", self.username, "localhost", self.password),
                                  capture_output=True, text=True, check=False, cwd=self.workdir)
            if done.returncode != 0:
                raise BrokerError(f"ejabberdctl register failed: {done.stdout}{done.stderr}")
            self.registered = True
        super()._wait_ready()


@dataclass
class Aedes(Broker):
    """Aedes (tests/node/aedes_broker.mjs) on ``port``: in-memory persistence, so a restart
    forgets retained messages."""

    name: ClassVar[str] = "Aedes"
    start_timeout: ClassVar[float] = 20.0

    def _launch(self) -> None:
        node = shutil.which("node") or _require("/usr/bin/node", "Node.js (Debian nodejs)")
        _require(NODE_PROJECT / "node_modules" / "aedes", "the npm package aedes (npm ci in "
                 "tests/node)")
        self.log.write_text("")
        self.process = _spawn([node, str(NODE_PROJECT / "aedes_broker.mjs"), str(self.port)],
                              self.log, cwd=NODE_PROJECT)

    def _wait_ready(self) -> None:
        ready: list[dict[str, Any]] = []

        def has_ready_line() -> bool:
            for line in self.log.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    data = json.loads(line)
                    if isinstance(data, dict) and data.get("ready"):
                        ready.append(data)
                        return True
            return False

        _wait_until(has_ready_line, self.start_timeout, f"Aedes on {self.port}", self.process,
                    self.log)
        self.version = str(ready[0]["version"])
        super()._wait_ready()


AMQTT_VENV = REPO / ".venv-amqtt"


@dataclass
class Amqtt(Broker):
    """amqtt's broker CLI (``.venv-amqtt/bin/amqtt``) on ``port``, anonymous clients allowed,
    no persistence plugin: a restart forgets retained messages."""

    name: ClassVar[str] = "amqtt"
    start_timeout: ClassVar[float] = 30.0

    def _launch(self) -> None:
        binary = _require(AMQTT_VENV / "bin" / "amqtt", "amqtt==0.12.1 in .venv-amqtt")
        if not self.version:
            self.version = subprocess.run([binary, "--version"], capture_output=True, text=True,
                                          check=True).stdout.strip()
        conf = self.workdir / "amqtt.yaml"
        conf.write_text(
            f"listeners:\n  default:\n    type: tcp\n    bind: {HOST}:{self.port}\n"
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
            "    allow_anonymous: true\n")
        self.process = _spawn([binary, "-c", str(conf)], self.log, cwd=self.workdir)


# --- context managers ----------------------------------------------------------------------------

@contextlib.contextmanager
def _workdir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)


@contextlib.contextmanager
def running_nats() -> Iterator[Nats]:
    """A single NATS node with JetStream and MQTT on free ports, for the block."""
    with _workdir("aqtest-nats-") as tmp, Nats(port=free_port(), workdir=tmp) as broker:
        yield broker


@contextlib.contextmanager
def running_nats_cluster(size: int = 3) -> Iterator[NatsCluster]:
    """A JetStream cluster of ``size`` nodes, MQTT streams with ``size`` replicas."""
    with _workdir("aqtest-natsc-") as tmp, NatsCluster(workdir=tmp, size=size) as cluster:
        yield cluster


@contextlib.contextmanager
def running_rabbitmq() -> Iterator[RabbitMq]:
    with _workdir("aqtest-rmq-") as tmp, RabbitMq(port=free_port(), workdir=tmp) as broker:
        yield broker


@contextlib.contextmanager
def running_ejabberd() -> Iterator[Ejabberd]:
    with _workdir("aqtest-ejd-") as tmp, Ejabberd(port=free_port(), workdir=tmp) as broker:
        yield broker


@contextlib.contextmanager
def running_aedes() -> Iterator[Aedes]:
    with _workdir("aqtest-aedes-") as tmp, Aedes(port=free_port(), workdir=tmp) as broker:
        yield broker


@contextlib.contextmanager
def running_amqtt() -> Iterator[Amqtt]:
    with _workdir("aqtest-amqtt-") as tmp, Amqtt(port=free_port(), workdir=tmp) as broker:
        yield broker
