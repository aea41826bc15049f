"""Menu 8, Send Commands: offers only what the running system accepts, asks before
anything that changes the host, and shows each agent's reply.

Targets come from ``/api/agents``, commands from each agent (``/api/agents/{name}``),
actions and their parameters from ``/api/remediation``, pending approvals likewise::

    SendCommands(api, prompter).run()
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import TypeAdapter
from rich.text import Text

from watchkeeper.cli._format import plain, state_style
from watchkeeper.cli._prompt import Back, Choice, Prompter
from watchkeeper.cli.client import ApiClient
from watchkeeper.cli.control_views import command_view
from watchkeeper.cli.params import RISKY_COMMANDS, add_process_identity
from watchkeeper.model.metrics import MetricsSample
from watchkeeper.model.snapshot import AgentHealth
from watchkeeper.web.responses import AgentDetail, CommandAnswer, RemediationReply

_AGENTS = TypeAdapter(dict[str, AgentHealth])

__all__ = ["COMMAND_HELP", "SendCommands"]

COMMAND_HELP = {
    "health_check": "report the agent's health",
    "pause": "stop checking until resumed",
    "resume": "start checking again",
    "restart": "restart the agent's loop",
    "sample_now": "take a metrics sample now",
    "analyze_now": "analyse the current state now (uses the LLM when available)",
    "list_actions": "list the remediation actions",
    "run_action": "run a remediation action (asks for details)",
    "approve": "approve an action awaiting approval",
    "reject": "reject an action awaiting approval",
    "reset_giveup": "try a given-up service again",
}


class SendCommands:
    """One pass through the screen: target, command, details, confirmation, reply."""

    def __init__(self, api: ApiClient, prompter: Prompter) -> None:
        self.api = api
        self.prompter = prompter
        self.console = prompter.console
        self.ask = prompter.ask
        self.pick = prompter.pick
        self.confirm = prompter.confirm
        self.pause = prompter.pause

    def run(self) -> None:
        agents = _AGENTS.validate_python(self.api.get("/api/agents"))
        names = sorted(agents)
        targets: list[Choice] = [("all", Text("all", style="bold"), Text("every agent"))]
        targets += [(n, plain(n, "bold"), plain(str(agents[n].state))) for n in names]
        target = self.pick("Target", targets)
        commands = self._commands_of(target, names)
        command = self.pick(
            f"Command for {target}",
            [(c, plain(c, "bold"), Text(COMMAND_HELP.get(c, ""))) for c in commands],
        )
        params, summary = self._params_for(command, target)
        if command in RISKY_COMMANDS and not self.confirm(summary):
            self.console.print(Text("Not sent.", style="yellow"))
            self.pause()
            return
        result = self.api.command(command, target, params)
        answer = CommandAnswer.model_validate(result.body)
        self.console.print(command_view(answer))
        for reply in answer.replies.values():
            if reply.record is not None and reply.record.outcome == "running":
                self._follow(reply.record.id)
        self.pause()

    def _follow(self, record_id: str, timeout: float = 20.0) -> None:
        """Wait for a running action's outcome in the audit trail, and show it."""
        with self.console.status("Waiting for the action to finish…"):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                audit = self.api.read("/api/remediation", RemediationReply, limit=100).audit
                done = [
                    r
                    for r in audit
                    if r.id == record_id and r.outcome not in ("running", "pending")
                ]
                if done:
                    final = done[-1]
                    outcome = str(final.outcome)
                    line = Text("Finished: ")
                    line.append_text(plain(outcome, state_style(outcome)))
                    line.append(" — ")
                    line.append_text(plain(final.detail))
                    self.console.print(line)
                    return
                time.sleep(0.3)
        self.console.print(Text("Still running; see 5 Remediation Status later.", style="yellow"))

    def _commands_of(self, target: str, names: list[str]) -> list[str]:
        if target != "all":
            return list(self.api.read(f"/api/agents/{target}", AgentDetail).commands)
        sets = [set(self.api.read(f"/api/agents/{n}", AgentDetail).commands) for n in names]
        common = set.intersection(*sets) if sets else set()
        return [c for c in COMMAND_HELP if c in common] + sorted(common - set(COMMAND_HELP))

    def _params_for(self, command: str, target: str) -> tuple[dict[str, Any], Text]:
        summary = Text(f"Send {command} to {target}?")
        if command == "run_action":
            return self._run_action_params()
        if command in ("approve", "reject"):
            pending = self.api.read("/api/remediation", RemediationReply).pending
            if not pending:
                self.console.print(Text("Nothing awaits approval.", style="yellow"))
                raise Back
            chosen = self.pick(
                "Awaiting approval",
                [
                    (
                        p.id,
                        Text.assemble(plain(p.action, "cyan"), " on ", plain(p.target)),
                        plain(f"{p.id}: {p.reason}", limit=80),
                    )
                    for p in pending
                ],
            )
            found = next(p for p in pending if p.id == chosen)
            question = Text(f"{command.capitalize()} ")
            question.append_text(plain(found.action, "bold cyan"))
            question.append(" on ")
            question.append_text(plain(found.target, "bold"))
            question.append(f" ({found.risk} risk, id {chosen})?")
            return {"id": chosen}, question
        if command == "reset_giveup":
            given = self.api.read("/api/remediation", RemediationReply).given_up
            if not given:
                self.console.print(Text("Nothing has been given up on.", style="yellow"))
                raise Back
            chosen = self.pick("Given up on", [(g.target, plain(g.target)) for g in given])
            question = Text("Try ")
            question.append_text(plain(chosen, "bold"))
            question.append(" again?")
            return {"target": chosen}, question
        return {}, summary

    def _run_action_params(self) -> tuple[dict[str, Any], Text]:
        actions = self.api.read("/api/remediation", RemediationReply).actions
        info = {a.name: a for a in actions}
        name = self.pick(
            "Action",
            [
                (n, plain(n, "bold"), plain(f"{a.risk} · {a.target_kind} · {a.description}"))
                for n, a in info.items()
            ],
        )
        target = self._target_of_kind(info[name].target_kind)
        extra: dict[str, Any] = {}
        for param in info[name].params:
            label = f"{param.name} ({param.type}, {param.description})"
            default = param.default
            while True:
                raw = self.ask(f"{label} [{'' if default is None else default}]: ")
                if not raw:
                    break
                try:
                    extra[param.name] = _convert(raw, param.type)
                    break
                except ValueError:
                    self.console.print(plain(f"{raw!r} is not a {param.type}", "red"))
        params: dict[str, Any] = {"action": name, "params": extra, "reason": "asked from the menu"}
        if target is not None:
            params["target"] = target
        params = add_process_identity(self.api, params)
        question = Text("Run ")
        question.append_text(plain(name, "bold cyan"))
        if target is not None:
            question.append(" on ")
            question.append_text(plain(target, "bold"))
        risk = info[name].risk
        question.append_text(
            plain(f" (risk: {risk})", state_style("critical" if risk == "dangerous" else "warning"))
        )
        question.append("?")
        return params, question

    def _target_of_kind(self, kind: str) -> str | None:
        if kind == "none":
            return None
        if kind == "service":
            sample = self.api.read_optional("/api/metrics", MetricsSample)
            services = sample.services if sample is not None else []
            if services:
                return self.pick(
                    "Service",
                    [(s.name, plain(s.name, "bold"), plain(str(s.state))) for s in services],
                )
        if kind == "process":
            sample = self.api.read_optional("/api/metrics", MetricsSample)
            top = sample.processes.top_cpu if sample and sample.processes else ()
            if top:
                from watchkeeper.cli.metrics_view import processes_table

                self.console.print(processes_table(top, "Busiest processes"))
        answer = self.ask(f"Target {kind} ({'pid' if kind == 'process' else 'name or path'}): ")
        if not answer:
            raise Back
        return answer


def _convert(raw: str, kind: str) -> Any:
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    if kind == "bool":
        if raw.lower() in ("true", "yes", "1", "y"):
            return True
        if raw.lower() in ("false", "no", "0", "n"):
            return False
        raise ValueError(raw)
    return raw
