"""Root causes: firing alerts that explain each other, grouped into incidents.

A full ``/`` makes the database fail, and the web answers 502 because the database is
down. Alert by alert that is three problems with three remedies, and the restarts run
while the disk is still full. Seen as one incident it is one problem with one probable
cause, and the remedies go root-first: make room, then restart what failed::

    book = IncidentBook()
    held = book.correlate(firing_alerts, suggestions, context, now)
    book.take_changes()   # [("opened", Incident(title="/ is full: db and web fail", ...))]

What the book knows, as relations between the *subjects* of firing alerts (alerts on one
subject always go together: ``service_down``, ``service_unhealthy`` and
``service_flapping`` of one service are one node, as are ``disk_full``, ``inodes_full``
and ``disk_filling`` of one mount):

* **Resource exhaustion comes before the failures it explains.** A mount that is full,
  out of inodes or filling explains the failure of a service whose configured ``paths``
  live on it (a path lives on the mount that is its longest prefix among the sample's
  filesystems). Without declared paths the link needs strong evidence: the service's
  detail, probe output or log lines say "No space left on device" (``ENOSPC``, quota
  exceeded) while a mount is full. Exhausted memory explains a service killed by signal 9
  or whose text says it ran out of memory; a saturated CPU explains a probe that timed out.
* **A failed service explains its dependents** (``depends_on``): web answering 502 is
  explained by the database it needs being down; chains go to the deepest cause.
* **A process that drives a resource belongs with it**: a runaway process at the top of
  ``cpu_high``'s evidence, a leaking one at the top of ``memory_high``'s. The resource is
  the root (the exhaustion is the problem, the process what to act on), and the process's
  own actions are not held: they are the remedy.
* An alert related to nothing is an incident of one.

In each group the root is a node nothing else explains (resources before processes
before services when several qualify); the alerts of the nodes explained are *effects*,
the other nodes *related*. While the root fires, effects are *held*: the engine strips
their suggested actions (their evidence says "held until / is fixed") and the incident's
``remedies`` list the root's actions first, then the related nodes', then the effects' in
order of distance from the root. When the root clears, the group is judged again and the
released alerts get their suggestions back.

Incidents keep their id while open: a new grouping claims the open incident it shares
the most alerts with. ``key`` is the root's subject. Changes are queued as
``("opened" | "updated" | "resolved", Incident)``; an incident is updated only when its
members, severity, root, flapping or notes change, never merely because time passed.
The book does no I/O and runs only when the engine saw alert transitions.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from watchkeeper.model.alerts import SEVERITY_RANK, Alert, Severity, SuggestedAction
from watchkeeper.model.incidents import Incident, IncidentMember, IncidentState
from watchkeeper.model.text import LABEL, clean

__all__ = [
    "IncidentBook",
    "IncidentContext",
    "ServiceFacts",
    "mount_of",
    "node_of",
]

# Rules whose subject names a resource node; other subjects are nodes of their own.
_MOUNT_PREFIXES = ("disk:", "inodes:", "disk-trend:")
_MEMORY_SUBJECTS = frozenset({"memory", "swap", "swap-io"})
_CPU_SUBJECTS = frozenset({"cpu", "load", "load-trend"})
_KIND_RANK = {"mount": 0, "memory": 1, "cpu": 2, "process": 3, "service": 4, "other": 5}
# Which alert of a node stands for it (lower first), before severity and age.
_RULE_RANK = {
    "disk_full": 0,
    "inodes_full": 1,
    "disk_filling": 2,
    "memory_high": 0,
    "swap_thrashing": 1,
    "swap_high": 2,
    "cpu_high": 0,
    "load_high": 1,
    "load_climbing": 2,
    "runaway_process": 0,
    "memory_leak": 1,
    "service_flapping": 0,
    "service_down": 1,
    "service_unhealthy": 2,
}
_EXHAUSTED = frozenset({"disk_full", "inodes_full"})
_FAILURE_RULES = frozenset(
    {"service_down", "service_unhealthy", "service_flapping", "service_stuck", "anomaly"}
)
_ENOSPC = ("no space left on device", "enospc", "disk quota exceeded", "edquot", "disk full")
_ENOMEM = ("out of memory", "cannot allocate memory", "enomem", "oom-kill", "oom killer")
_TIMEOUT = ("timed out", "timeout")
_SIGKILL = 9
_MAX_TITLE_NAMES = 3


def mount_of(path: str, mounts: Iterable[str]) -> str | None:
    """The mount ``path`` lives on: the longest mount that is a prefix of it."""
    target = PurePosixPath(path)
    best: str | None = None
    for mount in mounts:
        base = PurePosixPath(mount)
        if (target == base or base in target.parents) and (best is None or len(mount) > len(best)):
            best = mount
    return best


def node_of(alert: Alert) -> str:
    """The subject an alert is about, with one node per resource: ``mount:/``,
    ``memory``, ``cpu``, ``service:web``, ``process:4242`` (else its own subject)."""
    subject = alert.subject
    for prefix in _MOUNT_PREFIXES:
        if subject.startswith(prefix):
            return "mount:" + subject[len(prefix) :]
    if subject in _MEMORY_SUBJECTS:
        return "memory"
    if subject in _CPU_SUBJECTS:
        return "cpu"
    if subject.startswith("metric:"):
        return _metric_node(subject[len("metric:") :])
    return subject


def _metric_node(name: str) -> str:
    if name.startswith(("cpu.", "load.")):
        return "cpu"
    if name.startswith(("memory.", "swap.")):
        return "memory"
    if name.startswith("disk.") and "." in name[5:]:
        return "mount:" + name[5:].rsplit(".", 1)[0]
    if name.startswith("service.") and name.count(".") >= 2:
        return "service:" + name[len("service.") :].rsplit(".", 1)[0]
    return f"metric:{name}"


def _kind(node: str) -> str:
    head = node.split(":", 1)[0]
    if node in ("memory", "cpu"):
        return node
    return head if head in ("mount", "process", "service") else "other"


@dataclass(frozen=True)
class ServiceFacts:
    """What the engine knows of one service besides its alerts."""

    depends_on: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    text: str = ""  # detail, probe output, recent log lines, lowercased
    pid: int | None = None
    note: str = ""  # remediation's word on it: "gave up after 5 failures: ..."


@dataclass(frozen=True)
class IncidentContext:
    """The world the alerts live in: services, mounts, host."""

    services: Mapping[str, ServiceFacts] = field(default_factory=dict)
    mounts: tuple[str, ...] = ()
    host: str = ""
    # node -> seconds an incident about it stays open after its last alert cleared (a
    # service that changed state lately may be back at once: a crash loop is one incident)
    linger: Mapping[str, float] = field(default_factory=dict)


@dataclass
class _Node:
    name: str
    alerts: list[Alert]

    @property
    def severity(self) -> int:
        return max(SEVERITY_RANK[a.severity] for a in self.alerts)

    @property
    def primary(self) -> Alert:
        return min(
            self.alerts,
            key=lambda a: (_RULE_RANK.get(a.rule, 5), -SEVERITY_RANK[a.severity], a.started_at),
        )

    def rules(self) -> set[str]:
        return {a.rule for a in self.alerts}


@dataclass(frozen=True)
class _Edge:
    cause: str
    effect: str
    why: str
    confidence: float
    explains: bool = True  # False: they belong together, neither explains the other


@dataclass
class _Group:
    nodes: dict[str, _Node]
    edges: list[_Edge]
    root: str
    roles: dict[str, str]  # node -> root / related / effect
    depth: dict[str, int]

    def fingerprints(self) -> set[str]:
        return {a.fingerprint for n in self.nodes.values() for a in n.alerts}


def _label(node: _Node) -> str:
    """A short, cleaned name for a node, as people say it."""
    name = node.name
    if name.startswith("mount:"):
        return clean(name[len("mount:") :], LABEL, 48)
    if name.startswith("service:"):
        return clean(name[len("service:") :], LABEL, 32)
    if name.startswith("process:"):
        proc = node.primary.evidence.get("process")
        pname = proc.get("name") if isinstance(proc, dict) else None
        pid = name[len("process:") :]
        return f"{clean(str(pname), LABEL, 32)} (pid {clean(pid, LABEL, 12)})" if pname else name
    if name == "cpu":
        return "CPU"
    return clean(name, LABEL, 48)


def _root_phrase(node: _Node) -> str:
    alert, label = node.primary, _label(node)
    rule = alert.rule
    phrases = {
        "disk_full": f"{label} is full",
        "inodes_full": f"{label} is out of inodes",
        "disk_filling": f"{label} is filling up",
        "memory_high": "memory is exhausted"
        if alert.severity is Severity.CRITICAL
        else "memory is high",
        "swap_thrashing": "the host is thrashing swap",
        "swap_high": "swap is filling",
        "cpu_high": "CPU is saturated",
        "load_high": "load is high",
        "load_climbing": "load is climbing",
        "runaway_process": f"{label} pins a core",
        "memory_leak": f"{label} leaks memory",
        "service_down": f"{label} is down",
        "service_flapping": f"{label} is flapping",
        "service_unhealthy": f"{label} fails its probe",
    }
    return phrases.get(rule) or clean(alert.summary, LABEL, 80)


def _effect_phrase(node: _Node) -> str:
    kind, label = _kind(node.name), _label(node)
    if kind == "cpu":
        return "CPU saturated"
    if kind == "memory":
        return "memory high"
    if kind == "mount":
        return f"{label} full"
    return label


def _names(labels: list[str]) -> str:
    if len(labels) > _MAX_TITLE_NAMES:
        labels = [*labels[:_MAX_TITLE_NAMES], f"{len(labels) - _MAX_TITLE_NAMES} more"]
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def _text_has(text: str, needles: Sequence[str]) -> bool:
    return any(n in text for n in needles)


def _top_pid(alert: Alert) -> int | None:
    top = alert.evidence.get("top_processes")
    if isinstance(top, list) and top and isinstance(top[0], dict):
        pid = top[0].get("pid")
        return pid if isinstance(pid, int) else None
    return None


def _alert_text(alerts: Iterable[Alert]) -> str:
    parts: list[str] = []
    for alert in alerts:
        parts.append(alert.summary)
        parts.extend(str(v) for v in alert.evidence.values() if isinstance(v, str))
    return " ".join(parts).lower()


def _relations(nodes: Mapping[str, _Node], ctx: IncidentContext) -> list[_Edge]:
    """Every cause → effect edge between the nodes that fire now."""
    edges: list[_Edge] = []
    mounts = {n: node for n, node in nodes.items() if n.startswith("mount:")}
    full = sorted(
        (node for node in mounts.values() if node.rules() & _EXHAUSTED),
        key=lambda node: (-node.severity, node.name),
    )
    memory, cpu = nodes.get("memory"), nodes.get("cpu")
    for name, node in nodes.items():
        kind = _kind(name)
        if kind == "process":
            pid = name[len("process:") :]
            for resource in (cpu, memory):
                if resource is None:
                    continue
                if any(str(_top_pid(a)) == pid for a in resource.alerts):
                    what = "the CPU" if resource is cpu else "memory"
                    why = f"{_label(node)} drives {what}"
                    edges.append(_Edge(name, resource.name, why, 0.8, explains=False))
        if kind != "service" or not (node.rules() & _FAILURE_RULES):
            continue
        service = name[len("service:") :]
        facts = ctx.services.get(service, ServiceFacts())
        text = facts.text + " " + _alert_text(node.alerts)
        label = _label(node)
        linked: set[str] = set()
        for path in facts.paths:
            mount = mount_of(path, ctx.mounts)
            key = f"mount:{mount}"
            if mount is not None and key in mounts and key not in linked:
                linked.add(key)
                edges.append(
                    _Edge(
                        key,
                        name,
                        f"{label} keeps {clean(path, LABEL, 64)} on {_label(mounts[key])}",
                        0.9,
                    )
                )
        if not linked and full and _text_has(text, _ENOSPC):
            edges.append(_Edge(full[0].name, name, f"{label} reports no space left", 0.7))
        if memory is not None:
            killed = any(a.evidence.get("exit_signal") == _SIGKILL for a in node.alerts)
            exhausted = memory.severity >= SEVERITY_RANK[Severity.CRITICAL] or bool(
                memory.rules() & {"swap_thrashing"}
            )
            if _text_has(text, _ENOMEM) or (killed and exhausted):
                why = "ran out of memory" if not killed else "was killed (signal 9)"
                edges.append(_Edge("memory", name, f"{label} {why} while memory is short", 0.7))
        if (
            cpu is not None
            and cpu.severity >= SEVERITY_RANK[Severity.CRITICAL]
            and "service_unhealthy" in node.rules()
            and _text_has(text, _TIMEOUT)
        ):
            edges.append(_Edge("cpu", name, f"{label}'s probe times out on a busy CPU", 0.5))
        for needed in facts.depends_on:
            key = f"service:{needed}"
            if key in nodes and key != name:
                edges.append(
                    _Edge(
                        key,
                        name,
                        f"{label} depends on {clean(needed, LABEL, 32)}",
                        0.9,
                    )
                )
    return edges


def _groups(nodes: dict[str, _Node], edges: list[_Edge]) -> list[_Group]:
    parent = {n: n for n in nodes}

    def find(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for edge in edges:
        a, b = find(edge.cause), find(edge.effect)
        if a != b:
            parent[a] = b
    members: dict[str, list[str]] = {}
    for n in nodes:
        members.setdefault(find(n), []).append(n)
    groups = []
    for names in members.values():
        inside = set(names)
        group_edges = [e for e in edges if e.cause in inside and e.effect in inside]
        explained = {e.effect for e in group_edges if e.explains}
        sources = [n for n in names if n not in explained] or names

        def rank(n: str) -> tuple[int, int, float, str]:
            node = nodes[n]
            return (_KIND_RANK[_kind(n)], -node.severity, node.primary.started_at, n)

        root = min(sources, key=rank)
        roles = {n: ("effect" if n in explained and n != root else "related") for n in names}
        roles[root] = "root"
        depth = {root: 0}
        queue = deque([root])
        while queue:
            current = queue.popleft()
            for e in group_edges:
                if e.explains and e.cause == current and e.effect not in depth:
                    depth[e.effect] = depth[current] + 1
                    queue.append(e.effect)
        groups.append(_Group({n: nodes[n] for n in names}, group_edges, root, roles, depth))
    return groups


@dataclass
class _Open:
    incident: Incident
    signature: tuple[Any, ...]
    nodes: frozenset[str]
    quiet_since: float | None = None  # when its last alert cleared (it lingers)
    linger: float = 0.0


class IncidentBook:
    """The open incidents and the changes not yet taken; fed by ``correlate``."""

    def __init__(self, id_factory: Callable[[], str] | None = None) -> None:
        self._new_id = id_factory or (lambda: uuid.uuid4().hex[:12])
        self._open: dict[str, _Open] = {}
        self._changes: list[tuple[str, Incident]] = []
        self._of: dict[str, str] = {}  # fingerprint -> incident id

    # -- reading -----------------------------------------------------------------------------
    def open(self) -> list[Incident]:
        """Open incidents, worst first, then oldest."""
        return sorted(
            (o.incident for o in self._open.values()),
            key=lambda i: (-SEVERITY_RANK[i.severity], i.opened_at, i.id),
        )

    def incident_of(self, fingerprint: str) -> Incident | None:
        iid = self._of.get(fingerprint)
        return self._open[iid].incident if iid in self._open else None

    def refresh(self, alerts: Mapping[str, Alert]) -> None:
        """Bring what open incidents say of their members (summaries, flap counts) up to
        date with ``alerts`` (by fingerprint), without announcing a change."""
        for entry in self._open.values():
            incident = entry.incident
            members = [
                m.model_copy(update={"summary": alerts[m.fingerprint].summary})
                if m.fingerprint in alerts
                else m
                for m in incident.members
            ]
            flaps = [
                int(alerts[m.fingerprint].evidence.get("flaps", 0) or 0)
                for m in members
                if m.rule == "service_flapping" and m.fingerprint in alerts
            ]
            entry.incident = incident.model_copy(
                update={"members": members, "flaps": max(flaps, default=incident.flaps)}
            )

    def due(self, now: float) -> bool:
        """True when a lingering incident's time is up (judge again, even without alerts)."""
        return any(
            o.quiet_since is not None and now - o.quiet_since >= o.linger
            for o in self._open.values()
        )

    def take_changes(self) -> list[tuple[str, Incident]]:
        changes, self._changes = self._changes, []
        return changes

    # -- judging -----------------------------------------------------------------------------
    def correlate(
        self,
        alerts: Iterable[Alert],
        suggestions: Mapping[str, Sequence[SuggestedAction]],
        ctx: IncidentContext,
        now: float,
    ) -> dict[str, str]:
        """Group the firing ``alerts`` (above info) into incidents; queue the changes.

        ``suggestions`` are each alert's own actions (before any holding). Returns the
        alerts to hold: fingerprint → the label of the root that explains them."""
        nodes: dict[str, _Node] = {}
        for alert in alerts:
            if alert.severity is Severity.INFO:
                continue
            key = node_of(alert)
            node = nodes.get(key)
            if node is None:
                nodes[key] = _Node(key, [alert])
            else:
                node.alerts.append(alert)
        groups = _groups(nodes, _relations(nodes, ctx)) if nodes else []
        held: dict[str, str] = {}
        claimed: dict[str, _Group] = {}
        fresh: list[_Group] = []
        taken: set[str] = set()
        for group in sorted(groups, key=lambda g: -len(g.fingerprints())):
            fps = group.fingerprints()
            overlap: dict[str, int] = {}
            for fp in fps:
                iid = self._of.get(fp)
                if iid is not None and iid in self._open and iid not in taken:
                    overlap[iid] = overlap.get(iid, 0) + 1
            lingering = [
                iid
                for iid, o in self._open.items()
                if iid not in taken and o.quiet_since is not None and o.nodes & group.nodes.keys()
            ]
            if overlap:
                root_subject = group.nodes[group.root].primary.subject
                best = max(
                    overlap,
                    key=lambda i: (overlap[i], self._open[i].incident.key == root_subject),
                )
                taken.add(best)
                claimed[best] = group
            elif lingering:
                taken.add(lingering[0])
                claimed[lingering[0]] = group  # back within its grace: the same incident
            else:
                fresh.append(group)
            root_label = _label(group.nodes[group.root])
            for name, role in group.roles.items():
                if role == "effect":
                    for alert in group.nodes[name].alerts:
                        held[alert.fingerprint] = root_label
        of: dict[str, str] = {}
        for iid, group in claimed.items():
            self._put(iid, group, suggestions, ctx, now, of)
        for group in fresh:
            self._put(None, group, suggestions, ctx, now, of)
        for iid in [i for i in self._open if i not in claimed and i not in of.values()]:
            self._linger_or_resolve(iid, ctx, now, of)
        self._of = of
        return held

    def _linger_or_resolve(
        self, iid: str, ctx: IncidentContext, now: float, of: Mapping[str, str]
    ) -> None:
        entry = self._open[iid]
        if entry.quiet_since is None:
            linger = max((ctx.linger.get(n, 0.0) for n in entry.nodes), default=0.0)
            if linger > 0 and not any(m.fingerprint in of for m in entry.incident.members):
                entry.quiet_since, entry.linger = now, linger
                members = [m.model_copy(update={"firing": False}) for m in entry.incident.members]
                entry.incident = entry.incident.model_copy(
                    update={"members": members, "updated_at": now}
                )
                entry.signature = (*entry.signature, "quiet")
                self._changes.append(("updated", entry.incident))
                return
        elif now - entry.quiet_since < entry.linger:
            return
        self._resolve(iid, now, of)

    def _put(
        self,
        iid: str | None,
        group: _Group,
        suggestions: Mapping[str, Sequence[SuggestedAction]],
        ctx: IncidentContext,
        now: float,
        of: dict[str, str],
    ) -> None:
        root_node = group.nodes[group.root]
        root = root_node.primary
        order = sorted(
            group.nodes,
            key=lambda n: (
                {"root": 0, "related": 1, "effect": 2}[group.roles[n]],
                group.depth.get(n, 99),
                _KIND_RANK[_kind(n)],
                n,
            ),
        )
        members: list[IncidentMember] = []
        remedies: list[SuggestedAction] = []
        seen_remedies: set[tuple[str, str | None]] = set()
        for name in order:
            node = group.nodes[name]
            alerts = sorted(node.alerts, key=lambda a: a is not node.primary)
            for alert in alerts:
                role = "root" if alert is root else group.roles[name]
                if role == "root" and alert is not root:
                    role = "related"
                members.append(
                    IncidentMember(
                        alert_id=alert.id,
                        fingerprint=alert.fingerprint,
                        rule=alert.rule,
                        subject=alert.subject,
                        severity=alert.severity,
                        summary=alert.summary,
                        role=role,
                    )
                )
                for action in suggestions.get(alert.fingerprint, alert.suggested_actions):
                    ident = (action.action, action.target)
                    if ident not in seen_remedies:
                        seen_remedies.add(ident)
                        remedies.append(action)
        effects = [group.nodes[n] for n in order if group.roles[n] == "effect"]
        related = [group.nodes[n] for n in order if group.roles[n] == "related"]
        title = _root_phrase(root_node)
        failing = [_label(n) for n in effects if _kind(n.name) == "service"]
        others = [_effect_phrase(n) for n in effects if _kind(n.name) != "service"]
        parts = [_root_phrase(n) for n in related if _kind(n.name) == "process"] + others
        if failing:
            parts.append(f"{_names(failing)} {'fails' if len(failing) == 1 else 'fail'}")
        if parts:
            title = f"{title}: {'; '.join(parts)}"
        reasons = [e.why for e in group.edges]
        notes = [
            f"{_label(node)}: {ctx.services[name[len('service:') :]].note}"
            for name, node in group.nodes.items()
            if name.startswith("service:")
            and name[len("service:") :] in ctx.services
            and ctx.services[name[len("service:") :]].note
        ]
        root_cause = "; ".join([clean(root.summary, LABEL, 160), *reasons, *notes])
        confidence = min((e.confidence for e in group.edges), default=1.0)
        severity = max(
            (a.severity for n in group.nodes.values() for a in n.alerts),
            key=lambda s: SEVERITY_RANK[s],
        )
        flaps = [
            int(a.evidence.get("flaps", 0) or 0)
            for n in group.nodes.values()
            for a in n.alerts
            if a.rule == "service_flapping"
        ]
        signature = (
            frozenset(m.fingerprint for m in members),
            severity,
            root.fingerprint,
            bool(flaps),
            tuple(notes),
        )
        previous = self._open.get(iid) if iid is not None else None
        new_id = iid if iid is not None else self._new_id()
        incident = Incident(
            id=new_id,
            key=root.subject,
            title=title,
            severity=severity,
            root=root.fingerprint,
            root_cause=root_cause[:600],
            confidence=confidence,
            members=members,
            remedies=remedies,
            flapping=bool(flaps),
            flaps=max(flaps, default=0),
            opened_at=previous.incident.opened_at if previous else now,
            updated_at=now,
            host=ctx.host,
        )
        if previous is None:
            self._changes.append(("opened", incident))
        elif previous.signature != signature:
            self._changes.append(("updated", incident))
        else:
            # Same incident: keep its last announced time, refresh what it says.
            incident = incident.model_copy(update={"updated_at": previous.incident.updated_at})
        self._open[new_id] = _Open(incident, signature, frozenset(group.nodes))
        for m in members:
            of[m.fingerprint] = new_id

    def _resolve(self, iid: str, now: float, of: Mapping[str, str]) -> None:
        entry = self._open.pop(iid)
        incident = entry.incident
        moved = {of[m.fingerprint] for m in incident.members if m.fingerprint in of}
        root_cause = incident.root_cause
        if moved:
            root_cause = f"merged into {', '.join(sorted(moved))}; {root_cause}"[:600]
        resolved = incident.model_copy(
            update={
                "state": IncidentState.RESOLVED,
                "resolved_at": now,
                "updated_at": now,
                "root_cause": root_cause,
                "members": [m.model_copy(update={"firing": False}) for m in incident.members],
            }
        )
        self._changes.append(("resolved", resolved))
