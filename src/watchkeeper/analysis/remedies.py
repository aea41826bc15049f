"""Which proposed remedies survive what configuration and protection allow.

Every check (built-in, trend, baseline or a plugin's rule) may suggest actions; ``vet``
keeps only those the policy gate could carry out, so a person reading an alert is never
told to expect something that cannot happen:

- ``clean_directory`` on a filesystem only when a ``remediation.cleanup_dirs`` entry lies
  on it (the longest mount prefix of the directory is that mount), ``rotate_log`` only
  when a ``remediation.log_files`` entry does;
- ``restart_service`` only for a service that can be started again: a process service
  with ``argv``, or a systemd/Windows one (a pidfile-only process is watched, not owned);
  never a service named in ``remediation.protected_names``; ``reset_failed`` only for a
  systemd service, under the same protection;
- no process action on a protected process: pid 0/1, kernel threads (``kernel_thread``
  or a child of kthreadd), watchkeeper itself and its ancestors (in samples of this host:
  a pid means nothing on another host, whose own gate knows its watchkeeper), or a process
  known by a protected name (its name or its command line's program name, as the gate
  reads them);
- no ``kill_process`` on a service's main process: its manager would see a crash, and
  every client of the service loses its connection; the service's own remedies apply.

The alert still fires; its evidence says what was left out and why (``not_proposed``,
``protected``) and, where configuration would help, a ``hint``::

    checks = vet(checks, sample, settings)
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Callable, Hashable, Iterable
from pathlib import PurePath
from typing import Any

from watchkeeper.analysis.checks import Check
from watchkeeper.config import Settings
from watchkeeper.config.services import ServiceSpec
from watchkeeper.model.alerts import SuggestedAction
from watchkeeper.model.metrics import MetricsSample, ProcessInfo
from watchkeeper.model.text import LABEL, clean
from watchkeeper.remediation.processes import protected_pids

__all__ = ["names_of_info", "own_pids", "process_protection", "vet"]

_KTHREADD = 2
_PROCESS_ACTIONS = frozenset({"kill_process", "renice_process"})
_SERVICE_ACTIONS = frozenset({"restart_service", "start_service", "reset_failed"})
_own_cache: tuple[int, frozenset[int], str] | None = None


def _own() -> tuple[int, frozenset[int], str]:
    global _own_cache
    pid = os.getpid()
    if _own_cache is None or _own_cache[0] != pid:
        _own_cache = (pid, frozenset(protected_pids() - {0, 1, _KTHREADD}), socket.gethostname())
    return _own_cache


def own_pids() -> frozenset[int]:
    """watchkeeper's own pid and its ancestors (read once per process: they do not move)."""
    return _own()[1]


def _local(sample: MetricsSample | None) -> bool:
    """True for a sample of this host (the sensor names it by ``socket.gethostname()``)."""
    return sample is None or sample.host in ("", "localhost", _own()[2])


def names_of_info(proc: ProcessInfo) -> set[str]:
    """Every name ``proc`` goes by, lower-cased: its kernel name and the program its
    command line names (``sshd: user@pts/0`` is sshd)."""
    names = {proc.name.lower()} if proc.name else set()
    first = proc.cmdline.split(":", 1)[0].split()
    if first:
        names.add(os.path.basename(first[0]).lower())
    return names


def process_protection(
    pid: int,
    proc: ProcessInfo | None,
    protected_names: Iterable[str],
    own: frozenset[int],
    name: str | None = None,
) -> str | None:
    """Why no action may touch process ``pid`` (``proc`` when the sample has it), or None.
    ``protected_names`` is best given as a set of lower-case names."""
    if pid <= 1:
        return f"pid {pid} (init)" if pid == 1 else f"pid {pid}"
    if pid == _KTHREADD or (proc is not None and (proc.kernel_thread or proc.ppid == _KTHREADD)):
        return "kernel thread"
    if pid in own:
        return "watchkeeper itself" if pid == os.getpid() else "an ancestor of watchkeeper"
    names = names_of_info(proc) if proc is not None else set()
    if name:
        names.add(name.lower())
    protected = (
        protected_names
        if isinstance(protected_names, (set, frozenset))
        else {n.lower() for n in protected_names}
    )
    hit = sorted(names & protected)
    if hit:
        return f"protected name {clean(hit[0], LABEL, 32)!r} (remediation.protected_names)"
    return None


def _inside(path: PurePath, root: PurePath) -> bool:
    return path == root or root in path.parents


class _World:
    """What one sample and the settings allow, worked out once per ``vet`` call."""

    def __init__(
        self, sample: MetricsSample | None, settings: Settings, own: frozenset[int]
    ) -> None:
        self.settings = settings
        self.own = own
        disks = sample.disks if sample is not None else None
        self.mounts = [PurePath(fs.mount) for fs in disks.filesystems] if disks else []
        self.procs: dict[int, ProcessInfo] = {}
        if sample is not None and sample.processes is not None:
            for proc in (*sample.processes.top_memory, *sample.processes.top_cpu):
                self.procs[proc.pid] = proc
        self.service_pids: dict[int, str] = {}
        for status in sample.services if sample is not None else ():
            if status.pid is not None:
                self.service_pids[status.pid] = status.name
        self.specs: dict[str, ServiceSpec] = {spec.name: spec for spec in settings.services}
        self.protected = frozenset(n.lower() for n in settings.remediation.protected_names)
        self._verdicts: dict[tuple[str, str, str | None], tuple[str, str, str] | None] = {}
        self._dirs: list[tuple[PurePath, PurePath | None]] | None = None
        self._logs: list[tuple[PurePath, PurePath | None]] | None = None

    def mount_of(self, path: PurePath) -> PurePath | None:
        best: PurePath | None = None
        for mount in self.mounts:
            if _inside(path, mount) and (best is None or len(mount.parts) > len(best.parts)):
                best = mount
        return best

    def _placed(self, paths: Iterable[Any]) -> list[tuple[PurePath, PurePath | None]]:
        return [(PurePath(p), self.mount_of(PurePath(p))) for p in paths]

    def why_not(self, suggestion: SuggestedAction) -> tuple[str, str, str] | None:
        """``(why not, what would help, protection)`` for a suggestion that cannot run."""
        key = (suggestion.action, suggestion.target_kind, suggestion.target)
        if key not in self._verdicts:
            self._verdicts[key] = self._why_not(suggestion)
        return self._verdicts[key]

    def _why_not(self, suggestion: SuggestedAction) -> tuple[str, str, str] | None:
        action, target = suggestion.action, suggestion.target or ""
        if action == "clean_directory" and suggestion.target_kind == "path":
            return self._cleanable(target)
        if action == "rotate_log" and suggestion.target_kind == "path":
            return self._rotatable(target)
        if action in _SERVICE_ACTIONS and suggestion.target_kind == "service":
            return self._restartable(target, action)
        if action in _PROCESS_ACTIONS or suggestion.target_kind == "process":
            return self._touchable(suggestion)
        return None

    def _cleanable(self, target: str) -> tuple[str, str, str] | None:
        place = PurePath(target)
        mount = self.mount_of(place) or place
        if self._dirs is None:
            self._dirs = self._placed(d.path for d in self.settings.remediation.cleanup_dirs)
        for path, on in self._dirs:
            if (on is None or on == mount) and (_inside(path, place) or _inside(place, path)):
                return None
        return (
            f"no remediation.cleanup_dirs entry lies on {mount}",
            f"configure remediation.cleanup_dirs on {mount}",
            "",
        )

    def _rotatable(self, target: str) -> tuple[str, str, str] | None:
        place = PurePath(target)
        mount = self.mount_of(place) or place
        if self._logs is None:
            self._logs = self._placed(self.settings.remediation.log_files)
        for path, on in self._logs:
            if (on is None or on == mount) and _inside(path, place):
                return None
        return (
            f"no remediation.log_files entry lies on {mount}",
            f"configure remediation.log_files on {mount}",
            "",
        )

    def _restartable(self, name: str, action: str) -> tuple[str, str, str] | None:
        label = clean(name, LABEL, 64)
        protected = self.protected
        if name.lower() in protected or name.lower().removesuffix(".service") in protected:
            why = f"service {label} is protected (remediation.protected_names)"
            return why, "", "protected service name"
        spec = self.specs.get(name)
        if action == "reset_failed" and spec is not None and spec.manager != "systemd":
            return f"service {label} is not managed by systemd", "", ""
        # Without a spec here the service may live on another host of the fleet, whose
        # own gate knows it: only a spec that says "watched, not owned" rules it out.
        if spec is not None and spec.manager == "process" and spec.argv is None:
            return (
                f"service {label} is only watched through its pidfile, so it cannot be started",
                f"give {label} an argv (or let systemd manage it) so it can be restarted",
                "",
            )
        return None

    def _touchable(self, suggestion: SuggestedAction) -> tuple[str, str, str] | None:
        try:
            pid = int(suggestion.target or "")
        except ValueError:
            return f"target {clean(suggestion.target or '', LABEL, 32)!r} is not a pid", "", ""
        name = suggestion.params.get("name")
        why = process_protection(
            pid,
            self.procs.get(pid),
            self.protected,
            self.own,
            name if isinstance(name, str) else None,
        )
        if why is not None:
            return f"protected: {why}", "", why
        service = self.service_pids.get(pid)
        if suggestion.action == "kill_process" and service is not None:
            label = clean(service, LABEL, 64)
            return (
                f"pid {pid} is the main process of service {label}: killing it behind its "
                "manager's back drops every client",
                "",
                "",
            )
        return None


def vet(
    checks: list[Check],
    sample: MetricsSample | None,
    settings: Settings,
    tracked: Callable[[Hashable], bool] | None = None,
    *,
    own: frozenset[int] | None = None,
) -> list[Check]:
    """``checks`` with every suggestion that cannot or must not run taken out (in place;
    the list is returned). ``own``: the pids of watchkeeper and its ancestors, read from
    this machine when not given (and only for a sample of this host).

    ``tracked`` (the level tracker's) lets a clear check whose key holds nothing pass
    untouched: its suggestions can reach no alert, so vetting them would be wasted work."""
    world: _World | None = None
    for index, check in enumerate(checks):
        if not check.suggested:
            continue
        if check.raw is None and tracked is not None and not tracked((check.rule, check.subject)):
            continue
        if world is None:
            if own is None:
                own = own_pids() if _local(sample) else frozenset()
            world = _World(sample, settings, own)
        kept: list[SuggestedAction] = []
        refused: dict[str, str] = {}
        hints: list[str] = []
        protections: list[str] = []
        for suggestion in check.suggested:
            verdict = world.why_not(suggestion)
            if verdict is None:
                kept.append(suggestion)
                continue
            why, hint, protection = verdict
            refused.setdefault(suggestion.action, why)
            if hint:
                hints.append(hint)
            if protection:
                protections.append(protection)
        if not refused:
            continue
        earlier = check.evidence.get("not_proposed")
        if isinstance(earlier, dict):
            refused = {**earlier, **refused}
        evidence = {**check.evidence, "not_proposed": refused}
        if protections:
            evidence["protected"] = "; ".join(dict.fromkeys(protections))
        if hints:
            evidence["hint"] = "; ".join(dict.fromkeys(hints))
        checks[index] = dataclasses.replace(check, suggested=tuple(kept), evidence=evidence)
    return checks
