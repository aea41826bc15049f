"""``watchkeeper llm``: the local model, from this machine's point of view.

``watchkeeper llm check`` asks the configured server and model about one canned incident
and says whether it works here: reachable or not, the model's context, schema-valid or
why not, latency, tokens per second and the verdict. It needs no running watchkeeper::

    watchkeeper llm check                       # the [ollama] settings
    watchkeeper llm check --url http://gpu-box:11434 --model gemma3:270m --json

Exit codes: 0 valid reply, 1 unusable reply, 2 bad flag or config, 3 server not reachable,
4 model not pulled (see :data:`watchkeeper.llm.check.EXIT_CODES`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from watchkeeper.cli._common import emit_json, fail, load_or_exit, parse_sets

if TYPE_CHECKING:
    from watchkeeper.llm.check import CheckReport

__all__ = ["llm_app"]

llm_app = typer.Typer(
    help="Check the local LLM (Ollama) watchkeeper is configured to use.",
    no_args_is_help=True,
)


def _line(label: str, text: str) -> str:
    return f"{label + ':':<10} {text}"


def _figures(report: CheckReport) -> str:
    parts = []
    if report.prompt_tokens is not None:
        parts.append(f"prompt {report.prompt_tokens}")
    if report.completion_tokens is not None:
        parts.append(f"completion {report.completion_tokens}")
    if report.tokens_per_s is not None:
        parts.append(f"{report.tokens_per_s:g} tokens/s")
    return ", ".join(parts) or "not reported"


def render(report: CheckReport) -> str:
    """The report as lines for a person (every string in it is already cleaned)."""
    version = f" (Ollama {report.server_version})" if report.server_version else ""
    lines = [
        _line(
            "server",
            f"{report.server} {'reachable' if report.reachable else 'NOT reachable'}{version}",
        )
    ]
    if not report.reachable:
        lines.append(_line("problem", report.problem or report.probe))
        lines.append("result:    the server did not answer: is Ollama running there?")
        return "\n".join(lines)
    context = f"context {report.context_length} tokens" if report.context_length else "context ?"
    present = "present" if report.model_present else "NOT pulled"
    lines.append(_line("model", f"{report.model} {present}; {context}, num_ctx {report.num_ctx}"))
    if not report.model_present:
        lines.append(_line("problem", report.problem or report.probe))
        lines.append(f"result:    pull it first: ollama pull {report.model}")
        return "\n".join(lines)
    took = f"{report.latency_s:g} s" if report.latency_s is not None else "?"
    limit = f" (deadline {report.deadline_s:g} s)" if report.deadline_s else ""
    if report.valid:
        lines.append(_line("reply", f"schema-valid in {took}{limit}"))
    else:
        lines.append(_line("reply", f"NOT usable after {took}{limit}: {report.problem}"))
    lines.append(_line("tokens", _figures(report)))
    if report.valid:
        if report.verdict == report.expected_verdict:
            lines.append(_line("verdict", f"{report.verdict} (the rules agree)"))
        else:
            said = f"{report.verdict} (the rules say {report.expected_verdict})"
            lines.append(_line("verdict", said))
        if report.summary:
            lines.append(_line("summary", report.summary))
        for rec in report.recommended or ["nothing"]:
            lines.append(_line("proposes", rec))
        for why in report.dropped:
            lines.append(_line("dropped", why))
        lines.append("result:    ok: this model answers usable analyses here")
    else:
        lines.append("result:    the model answered, but nothing usable: the rules work alone")
    return "\n".join(lines)


@llm_app.command("check")
def check(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="Config file (default: as for 'run').", show_default=False
        ),
    ] = None,
    url: Annotated[str | None, typer.Option(help="Ollama's URL (default: ollama.url).")] = None,
    model: Annotated[str | None, typer.Option(help="The model (default: ollama.model).")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Any setting as KEY=VALUE, e.g. ollama.timeout=300."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Ask the configured model about one canned incident: does it work here?

    Exit codes: 0 schema-valid reply; 1 the reply was unusable (invalid, cut, too slow);
    2 bad flag or config; 3 the server could not be reached; 4 the model is not pulled.
    """
    flags = parse_sets(set_ or [])
    ollama = dict(flags.get("ollama") or {})
    if url is not None:
        ollama["url"] = url
    if model is not None:
        ollama["model"] = model
    if ollama:
        flags["ollama"] = ollama
    settings, _ = load_or_exit(config, flags)
    from watchkeeper.llm.check import run_check

    try:
        report = asyncio.run(run_check(settings.ollama))
    except KeyboardInterrupt:
        fail("interrupted", 130)
    if json_out:
        emit_json(report.model_dump(mode="json"))
    else:
        typer.echo(render(report))
    raise typer.Exit(report.exit_code)
