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

* **Resource exhaustion comes before the failures it explains.** A mount out of space or
  inodes (``disk_full`` / ``inodes_full`` at critical) explains the failure of a service
  whose configured ``paths`` live on it (a path lives on the mount that is its longest
  prefix among the sample's filesystems); a mount only filling, or full at a warning,
  does so when the service says it ran out of space. Without declared paths the link
  needs that strong evidence: the service's detail, probe output or log lines say "No
  space left on device" (``ENOSPC``, quota exceeded) while a mount is full. Exhausted
  memory explains a service killed by signal 9 or whose text says it ran out of memory;
  a saturated CPU, or a host thrashing swap, explains a probe that timed out.
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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from watchkeeper.analysis._correlation import (
    KIND_RANK,
    Group,
    IncidentContext,
    Node,
    ServiceFacts,
    effect_phrase,
    groups_of,
    kind_of,
    label_of,
    mount_of,
    names_phrase,
    node_of,
    relations,
    root_phrase,
)
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
        nodes: dict[str, Node] = {}
        for alert in alerts:
            if alert.severity is Severity.INFO:
                continue
            key = node_of(alert)
            node = nodes.get(key)
            if node is None:
                nodes[key] = Node(key, [alert])
            else:
                node.alerts.append(alert)
        groups = groups_of(nodes, relations(nodes, ctx)) if nodes else []
        held: dict[str, str] = {}
        claimed: dict[str, Group] = {}
        fresh: list[Group] = []
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
            root_label = label_of(group.nodes[group.root])
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
        group: Group,
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
                KIND_RANK[kind_of(n)],
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
        title = root_phrase(root_node)
        failing = [label_of(n) for n in effects if kind_of(n.name) == "service"]
        others = [effect_phrase(n) for n in effects if kind_of(n.name) != "service"]
        parts = [root_phrase(n) for n in related if kind_of(n.name) == "process"] + others
        if failing:
            parts.append(f"{names_phrase(failing)} {'fails' if len(failing) == 1 else 'fail'}")
        if parts:
            title = f"{title}: {'; '.join(parts)}"
        reasons = [e.why for e in group.edges]
        notes = [
            f"{label_of(node)}: {ctx.services[name[len('service:') :]].note}"
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
