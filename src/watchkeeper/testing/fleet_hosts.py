"""Several real watchkeeper hosts on one machine, on one NATS server: for fleet tests.

Each host is a real ``python -m watchkeeper run`` process with its own directory (data dir,
``watchkeeper.toml``), host id, NATS user, web port and token, and a process-managed demo
service to kill. A host may run inside a network namespace (``netns=``): its web then
binds the address given in ``web_address`` and its files are read from the shared disk::

    specs = [HostSpec("central", role="central"), HostSpec("web-1"), HostSpec("web-2")]
    with FleetHosts(tmp_path, [server.url], specs, passwords=PASSWORDS) as fleet:
        fleet["web-1"].kill_service()
        fleet["central"].get("/api/fleet/hosts")

``stop()`` ends every host with SIGTERM (SIGKILL after a grace period) and then every
process a host started that is still there, so a test leaves nothing running.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

import httpx
import psutil

__all__ = [
    "FleetHost",
    "FleetHosts",
    "HostSpec",
    "NetnsUnavailable",
    "VethNamespace",
    "free_port",
    "nats_login_error",
    "wait_for",
]

T = TypeVar("T")
_DEMO = Path(__file__).with_name("demo_service.py")


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], T | None], timeout: float, what: str) -> T:
    """The first truthy value of ``predicate()`` within ``timeout`` seconds, else
    ``AssertionError`` naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


@dataclass(frozen=True)
class HostSpec:
    """One host of the fleet. ``agents`` is ``run --agents`` (None: all of them);
    ``netns`` runs it inside that network namespace, reaching NATS on ``servers`` (default:
    the fleet's) and serving its web on ``web_address``."""

    host_id: str
    role: Literal["host", "central"] = "host"
    agents: str | None = None
    mode: Literal["auto", "approve", "dry_run"] = "auto"
    service: bool = True
    netns: str | None = None
    servers: tuple[str, ...] = ()
    web_address: str = "127.0.0.1"
    extra_toml: str = ""


def _toml(value: Any) -> str:
    return json.dumps(value)


@dataclass
class FleetHost:
    """One running (or stopped) host; see :class:`FleetHosts`."""

    spec: HostSpec
    directory: Path
    servers: list[str]
    password: str
    web_port: int = field(default_factory=free_port)
    service_port: int = field(default_factory=free_port)
    token: str = ""
    proc: subprocess.Popen[bytes] | None = None
    _children: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.token = self.token or f"token-{self.spec.host_id}-0123456789abcdef"

    @property
    def host_id(self) -> str:
        return self.spec.host_id

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def config_path(self) -> Path:
        return self.directory / "watchkeeper.toml"

    @property
    def url(self) -> str:
        return f"http://{self.spec.web_address}:{self.web_port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "run.log"

    def config_text(self) -> str:
        spec = self.spec
        text = f"""
data_dir = {_toml(str(self.data_dir))}
personality = "plain"
status_interval = 0.2

[agents]
check_interval = 1.0

[remediation]
mode = "{spec.mode}"
healing_cooldown = 1
verify_timeout = 10

[ollama]
enabled = false

[web]
host = {_toml(spec.web_address)}
port = {self.web_port}
token = {_toml(self.token)}
allowed_hosts = {_toml([spec.web_address])}

[bus]
backend = "nats"
servers = {_toml(self.servers)}
host_id = {_toml(spec.host_id)}
user = {_toml(spec.host_id)}
password = {_toml(self.password)}
connect_timeout = 1.0
reconnect_wait = 0.5
request_timeout = 5.0

[fleet]
role = "{spec.role}"
heartbeat_interval = 1.0
stale_after = 4.0
lost_after = 30.0
fallback_analyzer_after = 3.0
"""
        if spec.service:
            text += f"""
[[services]]
name = "demo"
argv = [{_toml(sys.executable)}, "-I", "-S", {_toml(str(_DEMO))}, "--port", "{self.service_port}"]
critical = true
min_uptime = 0.5
probe = {{ kind = "http", url = "http://127.0.0.1:{self.service_port}/", expect_status = 200 }}
"""
        return text + spec.extra_toml

    def start(self) -> None:
        """Write the config and start ``watchkeeper run`` (does not wait: see ``ready``)."""
        if self.proc is not None and self.proc.poll() is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config_text(), encoding="utf-8")
        command = [sys.executable, "-m", "watchkeeper", "run", "--config", str(self.config_path)]
        if self.spec.agents:
            command += ["--agents", self.spec.agents]
        if self.spec.netns:
            command = ["ip", "netns", "exec", self.spec.netns, *command]
        env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                command,
                cwd=self.directory,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ready(self) -> bool:
        """True when its web answers ``/api/health`` (any status: it is up)."""
        if not self.alive():
            raise AssertionError(f"{self.host_id} exited:\n{self.log_tail()}")
        try:
            httpx.get(self.url + "/api/health", timeout=1.0)
        except httpx.HTTPError:
            return False
        self._remember_children()
        return True

    def _remember_children(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                self._children.add(child.pid)

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM, SIGKILL after ``grace``; then whatever it started that is still there."""
        self._remember_children()
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self._reap_children()

    def kill(self) -> None:
        """Crash the host (SIGKILL), and the services it started with it."""
        self._remember_children()
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        self._reap_children()

    def _reap_children(self) -> None:
        for pid in sorted(self._children):
            with contextlib.suppress(psutil.Error, OSError):
                child = psutil.Process(pid)
                if self.directory.as_posix() in " ".join(child.cmdline()) or _DEMO.name in " ".join(
                    child.cmdline()
                ):
                    child.kill()
                    child.wait(timeout=5)
        self._children.clear()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # reading it as a user would

    def get(self, path: str, timeout: float = 5.0) -> Any:
        """GET ``path`` on this host's API; the JSON body (raises on a non-2xx status)."""
        reply = httpx.get(self.url + path, timeout=timeout)
        reply.raise_for_status()
        return reply.json()

    def get_text(self, path: str, timeout: float = 5.0) -> str:
        """The body of GET ``path`` as text, whatever the status (to look for leaks)."""
        return httpx.get(self.url + path, timeout=timeout).text

    def post(self, path: str, body: Any = None, *, token: str | None = None) -> httpx.Response:
        """POST with this host's token (or ``token``; ``""`` sends none)."""
        use = self.token if token is None else token
        headers = {"Authorization": f"Bearer {use}"} if use else {}
        return httpx.post(self.url + path, json=body, headers=headers, timeout=15.0)

    def status(self) -> dict[str, Any]:
        """The status file (``system_status.json``); ``{}`` while it is not written."""
        try:
            data = json.loads((self.data_dir / "system_status.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def service_pid(self, name: str = "demo", *, healthy: bool = False) -> int | None:
        """The pid of ``name`` while the sensor sees it running (and answering its probe,
        with ``healthy``), from the status file."""
        details = self.status().get("details", {})
        for svc in details.get("sensor", {}).get("services", []):
            if svc.get("name") == name and svc.get("state") == "running" and svc.get("pid"):
                if healthy and svc.get("healthy") is not True:
                    return None
                return int(svc["pid"])
        return None

    def kill_service(self, name: str = "demo", timeout: float = 30.0) -> int:
        """SIGKILL ``name`` once it runs and answers its probe; returns the old pid."""
        pid = wait_for(
            lambda: self.service_pid(name, healthy=True),
            timeout,
            f"{name} healthy on {self.host_id}",
        )
        os.kill(pid, signal.SIGKILL)
        return pid

    def remediation_records(self) -> list[dict[str, Any]]:
        """Pending approvals and the audit trail, from this host's own API, newest first."""
        data = self.get("/api/remediation?limit=1000")
        return list(data.get("pending") or []) + list(data.get("audit") or [])

    def restarts(self, name: str = "demo", outcome: str = "succeeded") -> list[dict[str, Any]]:
        """This host's audit records of restarting ``name`` with ``outcome``."""
        return [
            r
            for r in self.get("/api/remediation?limit=1000").get("audit") or []
            if r.get("action") == "restart_service"
            and r.get("target") == name
            and r.get("outcome") == outcome
        ]

    def alert_history(self) -> list[dict[str, Any]]:
        """Alerts firing or stored in the last hour on this host."""
        data = self.get("/api/alerts?range=1h&limit=1000")
        return list(data.get("firing") or []) + list(data.get("history") or [])


class FleetHosts:
    """The hosts of one test fleet; see the module docstring. The central (if any) is
    started first and waited for, so it has made the JetStream streams when the others
    begin to publish."""

    def __init__(
        self,
        directory: Path,
        servers: list[str],
        specs: Iterable[HostSpec],
        *,
        passwords: dict[str, str],
        start_timeout: float = 60.0,
    ) -> None:
        self.hosts: dict[str, FleetHost] = {}
        for spec in specs:
            self.hosts[spec.host_id] = FleetHost(
                spec=spec,
                directory=directory / spec.host_id,
                servers=list(spec.servers or servers),
                password=passwords[spec.host_id],
            )
        self._start_timeout = start_timeout

    def __getitem__(self, host_id: str) -> FleetHost:
        return self.hosts[host_id]

    def __iter__(self) -> Any:
        return iter(self.hosts.values())

    @property
    def central(self) -> FleetHost:
        return next(h for h in self.hosts.values() if h.spec.role == "central")

    def start(self) -> FleetHosts:
        centrals = [h for h in self.hosts.values() if h.spec.role == "central"]
        others = [h for h in self.hosts.values() if h.spec.role != "central"]
        try:
            for group in (centrals, others):
                for host in group:
                    host.start()
                for host in group:
                    wait_for(host.ready, self._start_timeout, f"{host.host_id}'s web to answer")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for host in self.hosts.values():
            if host.proc is not None and host.proc.poll() is None:
                host._remember_children()
                host.proc.send_signal(signal.SIGTERM)
        for host in self.hosts.values():
            host.stop()

    def __enter__(self) -> FleetHosts:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class NetnsUnavailable(RuntimeError):
    """Network namespaces cannot be made here (not root, or ``ip netns`` fails)."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=15, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()[:300]}")
    return result


class VethNamespace:
    """A network namespace joined to this one by a veth pair on a private /30.

    The outer end (``outer_address``) stays here, the inner end (``inner_address``) in the
    namespace ``name``, which also gets its own loopback. ``cut()`` takes the outer end
    down (the namespace loses its only way out) and ``reconnect()`` brings it back; the
    names are unique per instance and ``close()`` removes both, whatever happened::

        with VethNamespace() as ns:
            HostSpec("edge-1", netns=ns.name, servers=(f"nats://{ns.outer_address}:4222",))
            ns.cut(); ...; ns.reconnect()

    Raises :class:`NetnsUnavailable` when not root or when ``ip netns`` does not work.
    """

    def __init__(self) -> None:
        self._pick(os.urandom(3).hex())
        self._made = False

    def _pick(self, tag: str) -> None:
        self.name = f"wk-{tag}"
        self.outer_dev = f"wkv{tag}o"
        self.inner_dev = f"wkv{tag}i"
        third, fourth = int(tag[:2], 16), (int(tag[2:4], 16) % 64) * 4
        self.outer_address = f"10.231.{third}.{fourth + 1}"
        self.inner_address = f"10.231.{third}.{fourth + 2}"

    def _taken(self) -> bool:
        """True when another namespace (a test running beside this one) has the /30."""
        shown = _ip("-4", "-o", "addr", "show", check=False).stdout
        return f" {self.outer_address}/" in shown or f" {self.inner_address}/" in shown

    def open(self) -> VethNamespace:
        if os.geteuid() != 0:
            raise NetnsUnavailable("network namespaces need root")
        for _ in range(20):
            if not self._taken():
                break
            self._pick(os.urandom(3).hex())
        try:
            _ip("netns", "add", self.name)
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
            raise NetnsUnavailable(f"ip netns add failed: {exc}") from None
        self._made = True
        try:
            _ip("link", "add", self.outer_dev, "type", "veth", "peer", "name", self.inner_dev)
            _ip("link", "set", self.inner_dev, "netns", self.name)
            _ip("addr", "add", f"{self.outer_address}/30", "dev", self.outer_dev)
            _ip("link", "set", self.outer_dev, "up")
            inside = ("netns", "exec", self.name, "ip")
            _ip(*inside, "addr", "add", f"{self.inner_address}/30", "dev", self.inner_dev)
            _ip(*inside, "link", "set", self.inner_dev, "up")
            _ip(*inside, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise
        return self

    def cut(self) -> None:
        """Take the link down: nothing passes between the namespace and this side."""
        _ip("link", "set", self.outer_dev, "down")

    def reconnect(self) -> None:
        """Bring the link back up."""
        _ip("link", "set", self.outer_dev, "up")

    def close(self) -> None:
        """Remove the pair and the namespace (idempotent; errors of a half-made one ignored)."""
        if not self._made:
            return
        _ip("link", "del", self.outer_dev, check=False)
        _ip("netns", "del", self.name, check=False)
        self._made = False

    def __enter__(self) -> VethNamespace:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def nats_login_error(port: int, user: str, password: str, *, address: str = "127.0.0.1") -> str:
    """What the server says to a login (raw protocol, no client library): ``""`` when it
    accepts it, else its ``-ERR`` line (e.g. ``-ERR 'Authorization Violation'``)."""
    with socket.create_connection((address, port), timeout=3) as sock:
        sock.settimeout(3)
        buffer = b""
        while b"\r\n" not in buffer:
            buffer += sock.recv(4096)
        connect = {"verbose": False, "pedantic": False, "user": user, "pass": password}
        sock.sendall(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
        reply = b""
        while b"\r\n" not in reply:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    line = reply.split(b"\r\n", 1)[0].decode("utf-8", "replace")
    return "" if line.startswith("PONG") else line
