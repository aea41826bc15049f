"""Building command parameters from what a person types.

``--param KEY=VALUE`` gives a string and ``--param KEY:=JSON`` a JSON value (a number,
``true``, an object...); dotted keys nest, so for ``run_action``::

    parse_params(["action=renice_process", "target=4242", "params.niceness:=15"])
    # {"action": "renice_process", "target": "4242", "params": {"niceness": 15}}

Strings are the default because the API's identifiers (a pid given as a target, an action
id) are strings: guessing "4242 is a number" would make the server refuse them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from watchkeeper.cli.client import ApiClient, ApiError, is_loopback_url
from watchkeeper.model.metrics import MetricsSample
from watchkeeper.web.responses import RemediationReply

__all__ = ["RISKY_COMMANDS", "add_process_identity", "parse_params"]

#: Commands that change something on the host or stop work; the menu asks first.
RISKY_COMMANDS = frozenset({"run_action", "approve", "reject", "reset_giveup", "restart", "pause"})


def parse_params(pairs: Iterable[str]) -> dict[str, Any]:
    """``KEY=VALUE`` / ``KEY:=JSON`` pairs → nested parameters; :class:`ApiError` (exit 2)
    names the pair that is wrong."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        as_json = key.endswith(":")
        key = key.removesuffix(":").strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ApiError(
                f"--param expects KEY=VALUE (or KEY:=JSON), got {pair!r}; "
                "e.g. --param id=3f2a9c or --param params.niceness:=15"
            )
        value: Any = raw
        if as_json:
            try:
                value = json.loads(raw)
            except ValueError:
                raise ApiError(
                    f"--param {pair!r}: {raw!r} is not JSON; use KEY=VALUE for a plain string"
                ) from None
        node = params
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ApiError(f"--param {pair!r}: {part!r} was already given a value")
            node = child
        if isinstance(node.get(parts[-1]), dict):
            raise ApiError(f"--param {pair!r}: {key!r} already holds nested parameters")
        node[parts[-1]] = value
    return params


def _from_sample(sample: MetricsSample | None, pid: int) -> float | None:
    procs = sample.processes if sample is not None else None
    if procs is None:
        return None
    for proc in (*procs.top_cpu, *procs.top_memory):
        if proc.pid == pid:
            return proc.create_time
    return None


def _from_this_host(pid: int) -> float | None:
    try:
        import psutil

        return float(psutil.Process(pid).create_time())
    except Exception:  # gone, not permitted, or psutil cannot tell: the server will say why
        return None


def add_process_identity(api: ApiClient, params: dict[str, Any]) -> dict[str, Any]:
    """For ``run_action`` on a process: fill ``params.create_time`` when it is missing.

    The remediator acts on a pid only when its start time matches, so a pid reused by
    another process is never touched. A person names a pid they see now; its start time
    comes from the latest sample (what the daemon saw) or, for a daemon on this machine,
    from the process table here.
    """
    target = params.get("target")
    inner = params.get("params")
    if not isinstance(target, str) or not target.isdigit():
        return params
    if isinstance(inner, dict) and "create_time" in inner:
        return params
    remediation = api.read_optional("/api/remediation", RemediationReply)
    kinds = {a.name: a.target_kind for a in remediation.actions} if remediation else {}
    if kinds.get(str(params.get("action"))) != "process":
        return params
    pid = int(target)
    created = _from_sample(api.read_optional("/api/metrics", MetricsSample), pid)
    if created is None and is_loopback_url(api.url):
        created = _from_this_host(pid)
    if created is None:
        return params
    merged = dict(inner) if isinstance(inner, dict) else {}
    merged["create_time"] = created
    return {**params, "params": merged}
