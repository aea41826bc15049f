"""A real systemd, booted as PID 1 in a private Debian root, for tests and benchmarks.

The root is made once with ``debootstrap --variant=minbase`` (about a minute, 300 MB) and
cached; each boot lays a throwaway overlay over it, so the cached root never changes and
several boots can run side by side. systemd runs in new PID, mount, UTS, IPC, network and
cgroup namespaces, inside a chroot of that overlay, with its own tmpfs ``/tmp``, ``/run``
and ``/dev``, a read-only ``/sys`` and ``/proc/sys``, and a cgroup2 tree of its own::

    with SystemdRoot.boot() as root:
        root.write_unit("demo.service", "[Service]\\nExecStart=/bin/sleep infinity\\n")
        root.systemctl("start", "demo.service")
        wk = root.start_watchkeeper(CONFIG)      # ``watchkeeper run`` as a unit inside
        wk.status()                              # its system_status.json

Never boot systemd on the host's own root filesystem: it empties ``/tmp`` at once. The
boot script refuses to exec systemd unless ``/tmp``, ``/run`` and the root itself are the
private mounts it made. ``stop()`` halts systemd by its pid (SIGKILL after a timeout),
waits until every process of its namespace is gone and removes its cgroup; the mounts
were only ever in its own mount namespace.

:class:`SystemdUnavailable` says in one line why this machine cannot do it (not root, no
``debootstrap`` or ``unshare``, the Debian mirror unreachable).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

__all__ = [
    "PACKAGES",
    "SystemdRoot",
    "SystemdUnavailable",
    "WatchkeeperInRoot",
    "cache_dir",
    "debian_mirror",
    "ensure_root",
    "host_mounts_under",
    "wait_for",
]

PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "procps")
SUITE = "bookworm"
# Units that cannot work in a container or would reach the host's kernel (modules,
# binfmt, sysctl, udev) or wait for a console or the network: masked in the root.
MASKED_UNITS = (
    "getty.target", "console-getty.service", "systemd-sysctl.service",
    "systemd-modules-load.service", "kmod-static-nodes.service", "systemd-binfmt.service",
    "proc-sys-fs-binfmt_misc.automount", "proc-sys-fs-binfmt_misc.mount",
    "systemd-udevd.service", "systemd-udev-trigger.service", "systemd-udev-settle.service",
    "systemd-hwdb-update.service", "systemd-pstore.service", "systemd-remount-fs.service",
    "systemd-firstboot.service", "systemd-journald-audit.socket", "dev-hugepages.mount",
    "dev-mqueue.mount", "sys-kernel-debug.mount", "sys-kernel-tracing.mount",
    "sys-kernel-config.mount", "sys-fs-fuse-connections.mount",
    "apt-daily.timer", "apt-daily-upgrade.timer",
)  # fmt: skip
_LAYOUT = 1  # bump when the provisioning below changes: cached roots are rebuilt
_VENV = "/opt/wk"
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
_REFUSED = 97  # the boot script's exit status when a mount is not what it must be

# Run by ``unshare`` in the new namespaces: private mounts, then exec systemd in the chroot.
_BOOT_SCRIPT = r"""
set -eu
base=$1 layer=$2 m=$3 name=$4
mount --make-rprivate /
mount -t tmpfs -o mode=0755 wk-layer "$layer"
mkdir "$layer/upper" "$layer/work"
mount -t overlay -o "lowerdir=$base,upperdir=$layer/upper,workdir=$layer/work" wk-root "$m"
mount -t proc -o nosuid,nodev,noexec proc "$m/proc"
mount --bind "$m/proc/sys" "$m/proc/sys"
mount -o remount,bind,ro "$m/proc/sys"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$m/sys"
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$m/sys/fs/cgroup"
mount -t tmpfs -o mode=0755,nosuid dev "$m/dev"
for n in null zero full random urandom tty; do
    : > "$m/dev/$n"
    mount --bind "/dev/$n" "$m/dev/$n"
done
mkdir "$m/dev/pts" "$m/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$m/dev/pts"
ln -s pts/ptmx "$m/dev/ptmx"
ln -s /proc/self/fd "$m/dev/fd"
ln -s /proc/self/fd/0 "$m/dev/stdin"
ln -s /proc/self/fd/1 "$m/dev/stdout"
ln -s /proc/self/fd/2 "$m/dev/stderr"
mount -t tmpfs -o mode=1777,nosuid,nodev shm "$m/dev/shm"
mount -t tmpfs -o mode=0755,nosuid,nodev run "$m/run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmp "$m/tmp"
must() {
    grep -q "^[^ ]* $1 $2 " /proc/self/mounts || {
        echo "refusing to boot systemd: $1 is not a private $2 mount" >&2
        exit 97
    }
}
must "$m" overlay
must "$m/tmp" tmpfs
must "$m/run" tmpfs
must "$m/dev" tmpfs
must "$m/sys/fs/cgroup" cgroup2
[ "$(stat -c %d:%i "$m")" != "$(stat -c %d:%i /)" ] || { echo "root is /" >&2; exit 97; }
hostname "$name"
exec env -i container=watchkeeper-test PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    chroot "$m" /lib/systemd/systemd systemd.unified_cgroup_hierarchy=1
"""


class SystemdUnavailable(RuntimeError):
    """This machine cannot boot a private systemd; the message says why, in one line."""


def cache_dir() -> Path:
    """Where roots and wheels are cached: ``$WATCHKEEPER_SYSTEMD_ROOT`` or a temp folder."""
    chosen = os.environ.get("WATCHKEEPER_SYSTEMD_ROOT")
    path = Path(chosen) if chosen else Path(tempfile.gettempdir()) / "watchkeeper-systemd-root"
    if any(c.isspace() for c in str(path.resolve())):
        raise SystemdUnavailable(f"the cache folder {path} must not contain spaces")
    return path.resolve()


def debian_mirror(sources: Sequence[Path] = _SOURCES) -> str:
    """The Debian mirror apt uses here (deb822 ``URIs:`` or a ``deb`` line), not a guess."""
    for path in sources:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] == "URIs:" and "security" not in words[1]:
                return words[1]
            if len(words) >= 3 and words[0] == "deb" and "security" not in line:
                return next(w for w in words[1:] if not w.startswith("["))
    raise SystemdUnavailable("no Debian mirror found in " + " or ".join(map(str, sources)))


def _check_host() -> None:
    if sys.platform != "linux" or os.geteuid() != 0:
        raise SystemdUnavailable("booting a private systemd needs root on Linux")
    for tool in ("debootstrap", "unshare", "nsenter", "chroot", "setpriv", "mount"):
        if shutil.which(tool) is None:
            raise SystemdUnavailable(f"{tool} is not installed (apt-get install debootstrap)")
    filesystems = Path("/proc/filesystems").read_text()
    for fs in ("overlay", "cgroup2"):
        if fs not in filesystems:
            raise SystemdUnavailable(f"the kernel has no {fs} filesystem")
    if not _cgroup2_mount().is_dir():
        raise SystemdUnavailable("no cgroup2 hierarchy is mounted under /sys/fs/cgroup")


def _cgroup2_mount() -> Path:
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[2] == "cgroup2":
            return Path(parts[1])
    return Path("/nonexistent")


def host_mounts_under(path: Path) -> list[str]:
    """The host's mount points at or below ``path`` (there should never be any)."""
    prefix = str(path)
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = line.split()[1].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return found


def _remove_tree(path: Path) -> None:
    """Delete a folder we made, refusing if anything is mounted inside it."""
    if not path.exists():
        return
    mounted = host_mounts_under(path)
    if mounted:
        raise SystemdUnavailable(f"refusing to delete {path}: mounted there: {mounted[0]}")
    subprocess.run(["rm", "-rf", "--one-file-system", "--", str(path)], check=True)


def _sh(argv: Sequence[str], what: str, timeout: float, log: Path | None = None) -> None:
    out = log.open("ab") if log else subprocess.DEVNULL
    try:
        done = subprocess.run(
            list(argv), stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False
        )
    finally:
        if log:
            out.close()  # type: ignore[union-attr]
    if done.returncode != 0:
        where = f" (see {log})" if log else ""
        raise SystemdUnavailable(f"{what} failed with exit status {done.returncode}{where}")


def _in_chroot(root: Path, argv: Sequence[str], what: str, log: Path) -> None:
    """Run argv chrooted in ``root`` with a /proc of its own (gone with the namespace)."""
    script = 'mount --make-rprivate / && mount -t proc proc "$1/proc" && exec chroot "$@"'
    _sh(["unshare", "--mount", "--fork", "sh", "-c", script, "sh", str(root), *argv],
        what, 900, log)  # fmt: skip


def _project() -> Path:
    project = Path(__file__).resolve().parents[3]
    if not (project / "pyproject.toml").is_file() or not (project / "src").is_dir():
        raise SystemdUnavailable("the systemd harness needs a watchkeeper checkout")
    return project


def _source_digest(project: Path) -> str:
    digest = hashlib.sha256()
    files = [project / "pyproject.toml", project / "README.md", project / "LICENSE"]
    files += sorted(p for p in (project / "src").rglob("*") if p.is_file())
    for path in files:
        if "__pycache__" in path.parts or ".egg-info" in str(path):
            continue
        digest.update(str(path.relative_to(project)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _build_wheels(cache: Path, log: Path) -> tuple[Path, Path]:
    """(the watchkeeper wheel of this checkout, a folder of its dependencies' wheels)."""
    project = _project()
    wheel_dir = cache / "wheels" / f"watchkeeper-{_source_digest(project)}"
    if not any(wheel_dir.glob("watchkeeper-*.whl")):
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            src = Path(tmp) / "src"  # a copy, so no build/ or egg-info lands in the checkout
            src.mkdir()
            for name in ("pyproject.toml", "README.md", "LICENSE"):
                shutil.copy2(project / name, src / name)
            ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
            shutil.copytree(project / "src", src / "src", ignore=ignore)
            out = Path(tmp) / "out"
            pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out)]
            _sh([*pip, str(src)], "pip wheel watchkeeper", 600, log)
            wheel_dir.parent.mkdir(parents=True, exist_ok=True)
            _remove_tree(wheel_dir)
            out.rename(wheel_dir)
    wheel = next(wheel_dir.glob("watchkeeper-*.whl"))
    constraints = project / "constraints.txt"
    key = hashlib.sha256((project / "pyproject.toml").read_bytes())
    if constraints.is_file():
        key.update(constraints.read_bytes())
    deps = cache / "wheels" / f"deps-{key.hexdigest()[:16]}"
    if not deps.is_dir():
        partial = deps.with_name(deps.name + ".partial")
        _remove_tree(partial)
        pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "-w", str(partial)]
        if constraints.is_file():
            pip += ["-c", str(constraints)]
        _sh([*pip, str(wheel)], "pip wheel (watchkeeper's dependencies)", 900, log)
        for own in partial.glob("watchkeeper-*.whl"):
            own.unlink()
        partial.rename(deps)
    return wheel, deps


def _mirror_reachable(mirror: str) -> None:
    url = f"{mirror.rstrip('/')}/dists/{SUITE}/Release"
    try:
        with urllib.request.urlopen(url, timeout=15) as answer:
            answer.read(64)
    except (OSError, ValueError) as exc:
        raise SystemdUnavailable(f"the Debian mirror {mirror} cannot be reached: {exc}") from None


def _root_for(cache: Path, deps: Path) -> tuple[Path, str]:
    """The root folder for these packages and dependency wheels, and its stamp text."""
    stamp = json.dumps(
        {"layout": _LAYOUT, "suite": SUITE, "packages": PACKAGES, "deps": deps.name,
         "masked": MASKED_UNITS},
        sort_keys=True,
    )  # fmt: skip
    return cache / f"root-{hashlib.sha256(stamp.encode()).hexdigest()[:12]}", stamp


def ensure_root(cache: Path | None = None) -> Path:
    """The cached root for this checkout's dependencies, built first if missing.

    The root is immutable once built (every boot overlays it). Building happens in a
    ``.partial`` folder renamed at the end, so an interrupted build is redone, never used.
    """
    return _prepare(cache or cache_dir())[0]


@contextlib.contextmanager
def _build_lock(cache: Path) -> Iterator[None]:
    """One builder at a time per cache folder (other sessions may be booting too)."""
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / "build.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _prepare(cache: Path) -> tuple[Path, Path]:
    """(the cached root, this checkout's watchkeeper wheel), building what is missing."""
    _check_host()
    with _build_lock(cache):
        wheel, deps = _build_wheels(cache, cache / "build.log")
        return _ensure_root(cache, deps, cache / "build.log"), wheel


def _ensure_root(cache: Path, deps: Path, log: Path) -> Path:
    root, stamp = _root_for(cache, deps)
    stamp_file = root / ".watchkeeper-root"
    if stamp_file.is_file() and stamp_file.read_text() == stamp:
        return root
    _remove_tree(root)
    partial = root.with_name(root.name + ".partial")
    debootstrapped = partial / ".debootstrap-done"
    if not debootstrapped.is_file():
        _remove_tree(partial)
        mirror = debian_mirror()
        _mirror_reachable(mirror)
        # Its own mount namespace: the proc and sys mounts debootstrap makes cannot outlive it.
        argv = ["unshare", "--mount", "--fork", "debootstrap", "--variant=minbase",
                f"--include={','.join(PACKAGES)}", SUITE, str(partial), mirror]  # fmt: skip
        _sh(argv, "debootstrap", 1800, log)
        debootstrapped.write_text("")
    _provision(partial, deps, log)
    stamp_file = partial / ".watchkeeper-root"
    stamp_file.write_text(stamp)
    partial.rename(root)
    return root


def _provision(root: Path, deps: Path, log: Path) -> None:
    """Mask what cannot run in a container; a venv at /opt/wk with the dependencies."""
    units = root / "etc/systemd/system"
    units.mkdir(parents=True, exist_ok=True)
    for unit in MASKED_UNITS:
        link = units / unit
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("/dev/null")
    (root / "etc/hostname").write_text("wk-systemd\n")
    venv = root / _VENV.lstrip("/")
    _remove_tree(venv)
    _in_chroot(root, ["/usr/bin/python3", "-m", "venv", _VENV], "python3 -m venv", log)
    wheels = root / "opt/wk-wheels"
    _remove_tree(wheels)
    shutil.copytree(deps, wheels)
    names = sorted(f"/opt/wk-wheels/{p.name}" for p in wheels.glob("*.whl"))
    pip = [f"{_VENV}/bin/pip", "install", "--quiet", "--no-index", "--find-links", "/opt/wk-wheels"]
    _in_chroot(root, [*pip, *names], "pip install in the root", log)
    _remove_tree(wheels)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` every 0.1 s until it returns something true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def _ns_pids(ns: str) -> list[int]:
    """Every process on the host whose PID namespace is ``ns``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "ns" / "pid") == ns:
                    pids.append(int(entry.name))
    return pids


class SystemdRoot:
    """One booted systemd in a private root; see the module docstring.

    Use :meth:`boot` (or ``with SystemdRoot.boot() as root``); every command given to
    :meth:`run` is an argv list, run inside the root's namespaces and chroot.
    """

    def __init__(self, base: Path, wheel: Path, instance: Path) -> None:
        self.base = base
        self.instance = instance
        self.console_log = instance / "console.log"
        self._wheel = wheel
        self._proc: subprocess.Popen[bytes] | None = None
        self.cgroup = _cgroup2_mount() / f"watchkeeper-systemd-{instance.name}"
        self.pid = 0
        self.pid_ns = ""
        self._owner: IO[str] | None = None

    @classmethod
    def boot(cls, cache: Path | None = None, *, timeout: float = 90.0) -> SystemdRoot:
        """Build or reuse the root, boot systemd in it, install this checkout's watchkeeper."""
        cache = cache or cache_dir()
        base, wheel = _prepare(cache)
        instances = cache / "instances"
        instances.mkdir(exist_ok=True)
        _prune_stale(instances)
        instance = Path(tempfile.mkdtemp(prefix="boot-", dir=instances))
        root = cls(base, wheel, instance)
        root._owner = (instance / "owner.lock").open("w")
        fcntl.flock(root._owner, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held while this boot lives
        try:
            root._start(timeout)
            root._install_watchkeeper()
        except BaseException:
            root.stop()
            raise
        return root

    def __enter__(self) -> SystemdRoot:
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.stop()

    def _start(self, timeout: float) -> None:
        layer, merged = self.instance / "layer", self.instance / "root"
        layer.mkdir()
        merged.mkdir()
        self.cgroup.mkdir()
        enter_cgroup = 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"'
        argv = [
            "setpriv", "--pdeathsig", "KILL", "sh", "-c", enter_cgroup, "sh", str(self.cgroup),
            "unshare", "--pid", "--mount", "--uts", "--ipc", "--net", "--cgroup", "--fork",
            "--kill-child", "sh", "-c", _BOOT_SCRIPT, "sh",
            str(self.base), str(layer), str(merged), "wk-systemd",
        ]  # fmt: skip
        with self.console_log.open("wb") as console:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while not self.pid:
            if self._proc.poll() is not None:
                said = self.console_log.read_text(errors="replace").strip()[-400:]
                if self._proc.returncode == _REFUSED:  # a safety check failed: never a skip
                    raise RuntimeError(said)
                raise SystemdUnavailable(
                    f"systemd did not boot (exit status {self._proc.returncode}): {said}"
                )
            if time.monotonic() > deadline:
                raise SystemdUnavailable("systemd did not start within the timeout")
            self.pid = self._systemd_pid()
            time.sleep(0.05)
        self.pid_ns = os.readlink(f"/proc/{self.pid}/ns/pid")
        state = ""
        while time.monotonic() < deadline:
            done = self.run(["systemctl", "is-system-running", "--wait"], check=False,
                            timeout=max(1.0, deadline - time.monotonic()))  # fmt: skip
            state = done.stdout.strip()
            if state in ("running", "degraded"):
                return
            if self._proc.poll() is not None:
                break
            time.sleep(0.2)
        raise SystemdUnavailable(f"systemd did not reach running (state {state or 'unknown'})")

    def _systemd_pid(self) -> int:
        """The host pid of the root's PID 1: the chroot'd systemd, once it has exec'd."""
        assert self._proc is not None
        # setpriv, sh and unshare exec one another (one pid); its forked child execs systemd.
        for pid in _children(self._proc.pid):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    return pid
        return 0

    # -- inside the root --------------------------------------------------------------------
    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 60.0,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the root (its namespaces, chroot and a clean environment)."""
        if not self.pid:
            raise RuntimeError("systemd is not running")
        env = {"PATH": _PATH, "LANG": "C.UTF-8", "HOME": "/root", "SYSTEMD_PAGER": ""}
        done = subprocess.run(
            ["nsenter", "--target", str(self.pid), "--all", "--root", "--wd", "--", *argv],
            input=input, capture_output=True, text=True, timeout=timeout, env=env, check=False,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-600:]}"
            )
        return done

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(["systemctl", "--no-pager", *args], check=check)

    def python(self, code: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run Python code with the root's own python3."""
        return self.run(["/usr/bin/python3", "-c", code], check=check)

    def path(self, inside: str) -> Path:
        """The host's way into a path of the root (through /proc/PID/root)."""
        return Path(f"/proc/{self.pid}/root") / inside.lstrip("/")

    def write_file(self, inside: str, text: str, mode: int = 0o644) -> None:
        target = self.path(inside)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        target.chmod(mode)

    def write_unit(self, name: str, text: str) -> None:
        """Install a unit file in /etc/systemd/system and daemon-reload."""
        self.write_file(f"/etc/systemd/system/{name}", text)
        self.systemctl("daemon-reload")

    def show(self, unit: str, *props: str) -> dict[str, str]:
        """``systemctl show`` properties of ``unit`` as a dict."""
        done = self.systemctl("show", unit, f"--property={','.join(props)}")
        return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)

    def _install_watchkeeper(self) -> None:
        self.write_file(f"/opt/wk-wheel/{self._wheel.name}", "")
        shutil.copyfile(self._wheel, self.path(f"/opt/wk-wheel/{self._wheel.name}"))
        wheel = f"/opt/wk-wheel/{self._wheel.name}"
        pip = [f"{_VENV}/bin/pip", "install", "--quiet", "--no-index", "--no-deps"]
        self.run([*pip, "--force-reinstall", wheel], timeout=300)

    def start_watchkeeper(
        self, config_text: str, *, name: str = "wk", port: int | None = 8000
    ) -> WatchkeeperInRoot:
        """Run ``watchkeeper run`` inside the root as the transient unit ``watchkeeper-NAME``.

        Its data dir is /var/lib/watchkeeper/NAME in the root, its web API on the root's
        own loopback at ``port`` (``None``: no web); read both through the handle.
        """
        config = f"/etc/watchkeeper/{name}.toml"
        data = f"/var/lib/watchkeeper/{name}"
        self.write_file(config, config_text)
        self.path(data).mkdir(parents=True, exist_ok=True)
        unit = f"watchkeeper-{name}.service"
        web = ["--no-web"] if port is None else ["--host", "127.0.0.1", "--port", str(port)]
        self.run([
            "systemd-run", f"--unit={unit}", "--property=KillMode=mixed",
            f"--working-directory={data}", f"{_VENV}/bin/watchkeeper", "run",
            "--config", config, "--data-dir", data, *web,
        ])  # fmt: skip
        return WatchkeeperInRoot(self, unit, data, port)

    # -- stopping ---------------------------------------------------------------------------
    def stop(self, timeout: float = 20.0) -> None:
        """Halt systemd by its pid, SIGKILL it after ``timeout``, wait for the namespace."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if self.pid and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGRTMIN + 3)  # systemd's "halt"
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                if self.pid and proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.pid, signal.SIGKILL)  # PID 1 dies: the kernel kills the rest
                proc.kill()
                proc.wait(10)
        deadline = time.monotonic() + 10
        while self.pid_ns and _ns_pids(self.pid_ns) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = _ns_pids(self.pid_ns) if self.pid_ns else []
        self.pid = 0
        if left:
            raise RuntimeError(f"processes of the private systemd are still running: {left}")
        _remove_cgroup(self.cgroup)
        _remove_tree(self.instance)
        if self._owner is not None:
            self._owner.close()
            self._owner = None

    def leftover_pids(self) -> list[int]:
        """Processes of this root's namespace still on the host (after stop: none)."""
        return _ns_pids(self.pid_ns) if self.pid_ns else []


def _remove_cgroup(cgroup: Path) -> None:
    """Remove a boot's cgroup tree, deepest first (every process in it has ended)."""
    if not cgroup.is_dir():
        return
    for sub in sorted(cgroup.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if sub.is_dir():
            with contextlib.suppress(OSError):
                sub.rmdir()
    with contextlib.suppress(OSError):
        cgroup.rmdir()


def _prune_stale(instances: Path) -> None:
    """Remove what a boot whose owner was killed (SIGKILL, a lost CI job) left behind.

    A boot holds the lock on its folder's owner.lock while it lives; a folder whose lock
    is free and whose cgroup has no process left is stale: its cgroup and folder go.
    """
    for folder in instances.glob("boot-*"):
        lock = folder / "owner.lock"
        if not lock.is_file():
            continue
        with lock.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # its owner is alive
            cgroup = _cgroup2_mount() / f"watchkeeper-systemd-{folder.name}"
            procs = [p for p in cgroup.rglob("cgroup.procs") if p.read_text().strip()]
            if procs or host_mounts_under(folder):
                continue
            _remove_cgroup(cgroup)
            _remove_tree(folder)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


class WatchkeeperInRoot:
    """A ``watchkeeper run`` inside a :class:`SystemdRoot`, read through its files."""

    def __init__(self, root: SystemdRoot, unit: str, data_dir: str, port: int | None) -> None:
        self.root = root
        self.unit = unit
        self.data_dir = data_dir
        self.port = port

    def api(self, path: str) -> Any:
        """GET ``path`` of its web API (inside the root's network namespace) as JSON;
        ``None`` when it does not answer 200."""
        if self.port is None:
            raise RuntimeError("this watchkeeper runs without the web API")
        code = (
            "import sys, urllib.request\n"
            "try:\n"
            f"    r = urllib.request.urlopen('http://127.0.0.1:{self.port}' + sys.argv[1], "
            "timeout=10)\n"
            "    sys.stdout.write(r.read().decode())\n"
            "except Exception as exc:\n"
            "    sys.exit(f'no answer: {exc}')\n"
        )
        done = self.root.run(["/usr/bin/python3", "-c", code, path], check=False)
        if done.returncode != 0:
            return None
        try:
            return json.loads(done.stdout)
        except ValueError:
            return None

    def status(self) -> dict[str, Any]:
        """Its system_status.json ({} until the first one is written)."""
        try:
            text = self.root.path(f"{self.data_dir}/system_status.json").read_text()
            return json.loads(text)  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return {}

    def records(self) -> list[dict[str, Any]]:
        """Its machine log (agent_system.jsonl), one dict a line."""
        try:
            text = self.root.path(f"{self.data_dir}/agent_system.jsonl").read_text()
        except OSError:
            return []
        out = []
        for line in text.splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def active(self) -> bool:
        return self.root.systemctl("is-active", self.unit, check=False).stdout.strip() == "active"

    def journal(self, lines: int = 200) -> str:
        return self.root.run(["journalctl", "--no-pager", "-u", self.unit, "-n", str(lines)],
                             check=False).stdout  # fmt: skip

    def stop(self) -> None:
        self.root.systemctl("stop", self.unit, check=False)


@contextlib.contextmanager
def booted(cache: Path | None = None) -> Iterator[SystemdRoot]:
    """``with booted() as root``: the same as ``with SystemdRoot.boot() as root``."""
    with SystemdRoot.boot(cache) as root:
        yield root
