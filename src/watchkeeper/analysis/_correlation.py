"""What explains what between firing alerts: the knowledge behind incidents.

The private half of :mod:`watchkeeper.analysis.incidents` (which says what the knowledge
is and how it is used): the node each alert is about, the cause → effect relations between
the nodes that fire now, their grouping with a root, and the words of titles::

    edges = relations(nodes, ctx)
    for group in groups_of(nodes, edges): ...
"""

from __future__ import annotations

import posixpath
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from watchkeeper.model.alerts import SEVERITY_RANK, Alert, Severity
from watchkeeper.model.text import LABEL, clean

__all__ = [
    "KIND_RANK",
    "Edge",
    "Group",
    "IncidentContext",
    "Node",
    "ServiceFacts",
    "effect_phrase",
    "groups_of",
    "kind_of",
    "label_of",
    "mount_of",
    "names_phrase",
    "node_of",
    "relations",
    "root_phrase",
]

# Rules whose subject names a resource node; other subjects are nodes of their own.
_MOUNT_PREFIXES = ("disk:", "inodes:", "disk-trend:")
_MEMORY_SUBJECTS = frozenset({"memory", "swap", "swap-io"})
_CPU_SUBJECTS = frozenset({"cpu", "load", "load-trend"})
KIND_RANK = {"mount": 0, "memory": 1, "cpu": 2, "process": 3, "service": 4, "other": 5}
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
    "service_stuck": 3,
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
    target = posixpath.normpath(path)
    best: str | None = None
    for mount in mounts:
        base = posixpath.normpath(mount)
        inside = target == base or target.startswith(base if base == "/" else base + "/")
        if inside and (best is None or len(mount) > len(best)):
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


def kind_of(node: str) -> str:
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
class Node:
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
class Edge:
    cause: str
    effect: str
    why: str
    confidence: float
    explains: bool = True  # False: they belong together, neither explains the other


@dataclass
class Group:
    nodes: dict[str, Node]
    edges: list[Edge]
    root: str
    roles: dict[str, str]  # node -> root / related / effect
    depth: dict[str, int]

    def fingerprints(self) -> set[str]:
        return {a.fingerprint for n in self.nodes.values() for a in n.alerts}


def label_of(node: Node) -> str:
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


def root_phrase(node: Node) -> str:
    alert, label = node.primary, label_of(node)
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
        "service_stuck": f"{label} is stuck starting",
    }
    return phrases.get(rule) or clean(alert.summary, LABEL, 80)


def effect_phrase(node: Node) -> str:
    kind, label = kind_of(node.name), label_of(node)
    if kind == "cpu":
        return "CPU saturated"
    if kind == "memory":
        return "memory high"
    if kind == "mount":
        return f"{label} full"
    return label


def names_phrase(labels: list[str]) -> str:
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


def _exhausted(node: Node) -> bool:
    """A mount out of space or inodes: a critical ``disk_full`` / ``inodes_full``."""
    return any(a.rule in _EXHAUSTED and a.severity is Severity.CRITICAL for a in node.alerts)


def relations(nodes: Mapping[str, Node], ctx: IncidentContext) -> list[Edge]:
    """Every cause → effect edge between the nodes that fire now."""
    edges: list[Edge] = []
    mounts = {n: node for n, node in nodes.items() if n.startswith("mount:")}
    full = sorted(
        (node for node in mounts.values() if node.rules() & _EXHAUSTED),
        key=lambda node: (-node.severity, node.name),
    )
    memory, cpu = nodes.get("memory"), nodes.get("cpu")
    for name, node in nodes.items():
        kind = kind_of(name)
        if kind == "process":
            pid = name[len("process:") :]
            for resource in (cpu, memory):
                if resource is None:
                    continue
                if any(str(_top_pid(a)) == pid for a in resource.alerts):
                    what = "the CPU" if resource is cpu else "memory"
                    why = f"{label_of(node)} drives {what}"
                    edges.append(Edge(name, resource.name, why, 0.8, explains=False))
        if kind != "service" or not (node.rules() & _FAILURE_RULES):
            continue
        service = name[len("service:") :]
        facts = ctx.services.get(service, ServiceFacts())
        needs_text = bool(mounts) or memory is not None or cpu is not None
        text = facts.text + " " + _alert_text(node.alerts) if needs_text else ""
        label = label_of(node)
        linked: set[str] = set()
        no_space = _text_has(text, _ENOSPC)
        for path in facts.paths:
            mount = mount_of(path, ctx.mounts)
            key = f"mount:{mount}"
            # A disk that is only filling, or full at a warning, leaves room to write: it
            # explains a failure of what lives on it only when the service says so.
            if (
                mount is not None
                and key in mounts
                and key not in linked
                and (no_space or _exhausted(mounts[key]))
            ):
                linked.add(key)
                edges.append(
                    Edge(
                        key,
                        name,
                        f"{label} keeps {clean(path, LABEL, 64)} on {label_of(mounts[key])}",
                        0.9,
                    )
                )
        if not linked and full and no_space:
            edges.append(Edge(full[0].name, name, f"{label} reports no space left", 0.7))
        if memory is not None:
            killed = any(a.evidence.get("exit_signal") == _SIGKILL for a in node.alerts)
            exhausted = memory.severity >= SEVERITY_RANK[Severity.CRITICAL] or bool(
                memory.rules() & {"swap_thrashing"}
            )
            if _text_has(text, _ENOMEM) or (killed and exhausted):
                why = "ran out of memory" if not killed else "was killed (signal 9)"
                edges.append(Edge("memory", name, f"{label} {why} while memory is short", 0.7))
        slow = "service_unhealthy" in node.rules() and _text_has(text, _TIMEOUT)
        if slow and cpu is not None and cpu.severity >= SEVERITY_RANK[Severity.CRITICAL]:
            edges.append(Edge("cpu", name, f"{label}'s probe times out on a busy CPU", 0.5))
        elif slow and memory is not None and "swap_thrashing" in memory.rules():
            edges.append(Edge("memory", name, f"{label}'s probe times out while swapping", 0.5))
        for needed in facts.depends_on:
            key = f"service:{needed}"
            if key in nodes and key != name:
                edges.append(
                    Edge(
                        key,
                        name,
                        f"{label} depends on {clean(needed, LABEL, 32)}",
                        0.9,
                    )
                )
    return edges


def groups_of(nodes: dict[str, Node], edges: list[Edge]) -> list[Group]:
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
            return (KIND_RANK[kind_of(n)], -node.severity, node.primary.started_at, n)

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
        groups.append(Group({n: nodes[n] for n in names}, group_edges, root, roles, depth))
    return groups
